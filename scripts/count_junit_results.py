#!/usr/bin/env python3
"""Count test cases in a JUnit XML report (pytest --junitxml=FILE).

Usage: count_junit_results.py REPORT.xml
Prints "PASSED FAILED SKIPPED" on stdout. A missing or unreadable report
counts as one failure.
"""
import sys
import xml.etree.ElementTree as ET


def main():
    try:
        root = ET.parse(sys.argv[1]).getroot()
    except (OSError, ET.ParseError) as e:
        sys.stderr.write(f"no readable report: {e}\n")
        print("0 1 0")
        return
    passed = failed = skipped = 0
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
    print(passed, failed, skipped)


if __name__ == "__main__":
    main()
