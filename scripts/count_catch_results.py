#!/usr/bin/env python3
"""Count test cases in a Catch2 v2 XML report (-r xml -o FILE).

Usage: count_catch_results.py REPORT.xml
Prints "PASSED FAILED" on stdout, and the failed test cases with their first
failed expressions on stderr. A report that is cut short (the executable
crashed or was killed) still counts the test cases it finished, plus one
failure for the crash.
"""
import re
import sys
import xml.etree.ElementTree as ET


def describe_failure(case):
    lines = [f"FAILED: {case.get('name')} ({case.get('filename')}:{case.get('line')})"]
    for expr in case.iter("Expression"):
        if expr.get("success") == "false":
            original = (expr.findtext("Original") or "").strip()
            expanded = (expr.findtext("Expanded") or "").strip()
            if expr.get("type"):  # an unexpected exception is reported below, not as an expression
                lines.append(f"  {expr.get('filename')}:{expr.get('line')}: {expr.get('type')}({original}) with {expanded}")
    for tag in ("Exception", "FatalErrorCondition"):
        for node in case.iter(tag):
            lines.append(f"  {tag} at {node.get('filename')}:{node.get('line')}: {(node.text or '').strip()}")
    return "\n".join(lines[:12])


def main():
    path = sys.argv[1]
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        sys.stderr.write(f"no report: {e}\n")
        print("0 1")
        return
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        # Cut short: count the finished test cases from their OverallResult lines.
        results = re.findall(r'<OverallResult success="(true|false)"', text)
        passed, failed = results.count("true"), results.count("false") + 1
        sys.stderr.write(f"{path}: report is incomplete (the test executable crashed or was killed)\n")
        print(passed, failed)
        return
    passed = failed = 0
    for case in root.iter("TestCase"):
        result = case.find("OverallResult")
        if result is not None and result.get("success") == "true":
            passed += 1
        else:
            failed += 1
            sys.stderr.write(describe_failure(case) + "\n")
    print(passed, failed)


if __name__ == "__main__":
    main()
