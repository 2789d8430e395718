// Config parsing: defaults, relative paths, clear errors (global/config.hpp).
#include <catch2/catch.hpp>

#include "global/config.hpp"

TEST_CASE("relative paths and sockets resolve against the config file's folder", "[config]") {
    auto c = mx::parse_config(
        "state_dir = \"state\"\n[milter]\nsocket = \"unix:run/m.sock\"\nsocketmap = "
        "\"unix:run/s.sock\"\n",
        "/etc/mx/mx.toml");
    CHECK(c.state_dir == "/etc/mx/state");
    CHECK(c.milter.socket == "unix:/etc/mx/run/m.sock");
    CHECK(c.resolve_socket("unix:run/s.sock") == "unix:/etc/mx/run/s.sock");
    CHECK(c.resolve_socket("inet:8891@127.0.0.1") == "inet:8891@127.0.0.1");
    CHECK(c.resolve_socket("unix:/abs.sock") == "unix:/abs.sock");
    CHECK(c.resolve_path("/x/y") == "/x/y");
}

TEST_CASE("defaults and contract keys", "[config]") {
    auto c = mx::parse_config("hostname = \"mx.example.com\"\nuser = \"mxconnector\"\n",
                              "/etc/mx/mx.toml");
    CHECK(c.state_dir == "/var/lib/mx-connector");
    CHECK(c.run_dir == "/run/mx-connector");
    CHECK(c.mail_root == "/var/mail/mx-connector");
    CHECK(c.milter.socket == "unix:/run/mx-connector/milter.sock");
    CHECK(c.smtp.host == "127.0.0.1");
    CHECK(c.smtp.port == 25);
    CHECK(c.smtp.security == mx::tls_mode::none);
    CHECK(c.user == "mxconnector");
    CHECK(c.section("importer").is_object());
}

TEST_CASE("bad values are reported with file and key", "[config]") {
    CHECK_THROWS_WITH(mx::parse_config("[smtp]\nport = 70000\n", "/etc/mx/mx.toml"),
                      Catch::Contains("/etc/mx/mx.toml: smtp.port"));
    CHECK_THROWS_WITH(mx::parse_config("[smtp]\nsecurity = \"maybe\"\n", "/etc/mx/mx.toml"),
                      Catch::Contains("smtp.security"));
    CHECK_THROWS_WITH(mx::parse_config("state_dir = 5\n", "/etc/mx/mx.toml"),
                      Catch::Contains("state_dir"));
    CHECK_THROWS_WITH(mx::parse_config("[milter\n", "/etc/mx/mx.toml"),
                      Catch::Contains("/etc/mx/mx.toml:1"));
    CHECK_THROWS_WITH(mx::parse_config("[milter]\nsocket = \"tcp:1\"\n", "/etc/mx/mx.toml"),
                      Catch::Contains("milter.socket"));
}
