// util::spawn (programs with a time limit), util::socket_io (deadlines), util::netstring,
// util::effective_uid (privdrop) and util::fd_passing (SCM_RIGHTS).
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <thread>

#include "util/fd_passing.hpp"
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

TEST_CASE("fd_passing: descriptors in one message, the surplus closed, truncation reported",
          "[fd_passing]") {
    auto open_fds = [] {
        std::size_t n = 0;
        for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) n += !e.path().empty();
        return n;
    };
    const std::size_t before = open_fds();
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    unique_fd a(sv[0]), b(sv[1]);
    int p[2];
    REQUIRE(::pipe(p) == 0);
    unique_fd r(p[0]), w(p[1]);
    int three[3] = {r.get(), w.get(), r.get()};
    REQUIRE(send_fds(a.get(), "hello", 5, three, 3, 0) == 5);
    char buf[16];
    std::vector<int> got;
    int flags = 0;
    REQUIRE(recv_fds(b.get(), buf, sizeof buf, got, 2, flags) == 5);
    CHECK(std::string(buf, 5) == "hello");
    REQUIRE(got.size() == 2);  // the third refused by the kernel (reported), not leaked
    CHECK((flags & MSG_CTRUNC) != 0);
    CHECK((flags & MSG_TRUNC) == 0);
    for (int fd : got) CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    // They work: a byte written into the received write end comes out of the read end.
    REQUIRE(::write(got[1], "x", 1) == 1);
    char c = 0;
    CHECK(::read(r.get(), &c, 1) == 1);
    CHECK(c == 'x');
    for (int fd : got) ::close(fd);
    // A body longer than the buffer: MSG_TRUNC, never an overflow.
    REQUIRE(send_fds(a.get(), "0123456789", 10, nullptr, 0, 0) == 10);
    REQUIRE(recv_fds(b.get(), buf, 4, got, 2, flags) == 4);
    CHECK((flags & MSG_TRUNC) != 0);
    CHECK(got.empty());
    // EOF when the peer is gone.
    a.reset();
    CHECK(recv_fds(b.get(), buf, sizeof buf, got, 2, flags) == 0);
    b.reset();
    r.reset();
    w.reset();
    CHECK(open_fds() == before);  // nothing received was left open
}
