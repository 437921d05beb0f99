// Catch2 v2 main of ptxattn-tests-cpu (the tests are in the other files of this directory).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
