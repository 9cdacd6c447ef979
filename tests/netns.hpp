// iproute2 for the tests that build real networks of namespaces (test_partition,
// test_ha_partition; they need root, and fail saying so without it).
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

namespace zyolo_test {

// Runs an iproute2 command line; the test stops if it fails.
inline void ip(const std::string& args) {
  const std::string cmd = "ip " + args;
  INFO(cmd);
  REQUIRE(std::system(cmd.c_str()) == 0);
}

// A veth link between namespaces `ns1` and `ns2`: interface `if1` with address `ip1`/24 in the
// first, `if2` with `ip2`/24 in the second, both up.
inline void veth(const std::string& ns1, const std::string& if1, const std::string& ip1,
                 const std::string& ns2, const std::string& if2, const std::string& ip2) {
  ip("link add " + if1 + " netns " + ns1 + " type veth peer name " + if2 + " netns " + ns2);
  ip("-n " + ns1 + " addr add " + ip1 + "/24 dev " + if1);
  ip("-n " + ns2 + " addr add " + ip2 + "/24 dev " + if2);
  ip("-n " + ns1 + " link set " + if1 + " up");
  ip("-n " + ns2 + " link set " + if2 + " up");
}

}  // namespace zyolo_test
