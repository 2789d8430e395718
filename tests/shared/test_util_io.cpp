// util::spawn (programs with a time limit), util::socket_io (deadlines), util::netstring and
// util::effective_uid (privdrop).
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <thread>

#include "util/netstring.hpp"
#include "util/privdrop.hpp"
#include "util/socket_io.hpp"
#include "util/spawn.hpp"

using namespace mx::util;
using namespace std::chrono_literals;

TEST_CASE("run_program: status, separate streams, no shell", "[spawn]") {
    auto r = run_program({"sh", "-c", "echo out; echo err >&2; exit 3"});
    CHECK(r.status == 3);
    CHECK(r.out == "out\n");
    CHECK(r.err == "err\n");
    CHECK_FALSE(r.timed_out);
    auto lit = run_program({"echo", "$HOME; true"});  // arguments are not re-parsed
    CHECK(lit.out == "$HOME; true\n");
    auto missing = run_program({"/nonexistent/program"});
    CHECK(missing.status == 127);
    run_options o;
    o.cwd = "/";
    CHECK(run_program({"pwd"}, o).out == "/\n");
}

TEST_CASE("run_program kills a program past its time limit", "[spawn]") {
    run_options o;
    o.timeout = 200ms;
    auto r = run_program({"sleep", "30"}, o);
    CHECK(r.timed_out);
    CHECK(r.status == -1);
}

TEST_CASE("socket_io: read_until, deadlines, closed peers", "[socket_io]") {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    unique_fd a(sv[0]), b(sv[1]);
    write_all(a.get(), "hello\nworld", 1s);
    std::string buf;
    read_until(b.get(), buf, 1s, [](const std::string& s) { return s.find('\n') != s.npos; });
    CHECK(buf.rfind("hello\n", 0) == 0);
    std::string more;
    CHECK_THROWS_AS(read_until(b.get(), more, 100ms, [](const std::string&) { return false; }),
                    socket_error);  // nothing more arrives: the deadline ends it
    std::string big;
    write_all(a.get(), std::string(100, 'x'), 1s);
    CHECK_THROWS_AS(read_until(
                        b.get(), big, 1s, [](const std::string&) { return false; }, 50),
                    socket_error);  // bounded
    a.reset();
    std::string rest;
    CHECK_THROWS_AS(read_until(b.get(), rest, 1s, [](const std::string&) { return false; }),
                    socket_error);  // EOF
    CHECK_THROWS_AS(connect_unix("/nonexistent/x.sock", 100ms), socket_error);
}

TEST_CASE("netstring framing", "[netstring]") {
    CHECK(netstring("OK x") == "4:OK x,");
    auto r = parse_netstring("3:abc,rest", 100);
    REQUIRE(r);
    CHECK(r->first == "abc");
    CHECK(r->second == 6);
    CHECK_FALSE(parse_netstring("3:ab", 100));
    CHECK_THROWS_AS(parse_netstring("3:abcd", 100), netstring_error);
    CHECK_THROWS_AS(parse_netstring("200:", 100), netstring_error);
}

TEST_CASE("effective_uid: geteuid() cached, forgotten when drop_privileges() switches",
          "[privdrop]") {
    CHECK(effective_uid() == ::geteuid());
    CHECK(effective_uid() == ::geteuid());  // the cached value
    if (::geteuid() != 0) return;           // the switch needs root
    auto nobody = lookup_account("nobody");
    REQUIRE(nobody);
    // run_as() forks and drops in the child: the child's answer is the new account's uid,
    // although the parent's cached 0 was inherited; the parent keeps 0.
    CHECK(run_as(*nobody, [] { return std::to_string(effective_uid()); }) ==
          std::to_string(nobody->uid));
    CHECK(effective_uid() == 0);
}
