// Unit tests of mx-console's pieces and the shared operations it runs (admin/ops): [console]
// settings, the history ring, HTML escaping, console accounts, one-transaction connector saves.
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include <filesystem>

#include "console.hpp"
#include "ops/console_users.hpp"

#include "console_test_env.hpp"

namespace fs = std::filesystem;
using console_test::cfg_with;
using console_test::temp_dir;
using console_test::test_env;

TEST_CASE("[console] listen: loopback by default, anything else only with TLS", "[console]") {
    temp_dir t;
    auto s = mx::console::read_settings(cfg_with(t, ""));
    CHECK(s.host == "127.0.0.1");
    CHECK(s.port == 8025);
    CHECK(mx::console::read_settings(cfg_with(t, "[console]\nlisten = \"[::1]:9000\"\n")).port ==
          9000);
    CHECK_THROWS_AS(mx::console::read_settings(cfg_with(t, "[console]\nlisten = \"0.0.0.0:80\"\n")),
                    mx::config_error);
    CHECK_THROWS_AS(
        mx::console::read_settings(cfg_with(t, "[console]\nlisten = \"127.0.0.1:0\"\n")),
        mx::config_error);
    CHECK_THROWS_AS(mx::console::read_settings(cfg_with(t, "[console]\ntls_cert = \"c.pem\"\n")),
                    mx::config_error);
    auto tls = mx::console::read_settings(cfg_with(
        t, "[console]\nlisten = \"0.0.0.0:443\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n"));
    CHECK(tls.port == 443);
    CHECK(fs::path(tls.tls_key) == t.path / "k.pem");  // relative to the config file
}

TEST_CASE("the history ring keeps the last N points, oldest first, in a fixed-size file",
          "[console]") {
    temp_dir t;
    auto file = t.path / "history.bin";
    mx::console::history ring(file, 5);
    CHECK(ring.read().empty());
    for (int i = 1; i <= 8; ++i) {
        mx::console::sample s;
        s.time = 1000 + i;
        s.accepted = static_cast<std::uint64_t>(i);
        ring.append(s);
    }
    auto pts = ring.read();
    REQUIRE(pts.size() == 5);
    CHECK(pts.front().time == 1004);
    CHECK(pts.back().accepted == 8);
    CHECK(fs::file_size(file) == 32 + 5 * 64);
    // Read with another size: not trusted, starts over.
    CHECK(mx::console::history(file, 7).read().empty());
}

TEST_CASE("h() escapes everything HTML gives meaning to", "[console]") {
    CHECK(mx::console::h("<script>alert('x')</script> & \"q\"") ==
          "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
    CHECK(mx::console::url_encode("a b&c=d/é") == "a%20b%26c%3Dd%2F%C3%A9");
}

TEST_CASE("console accounts: Argon2id hashes in a 0600 file, refusals change nothing",
          "[console]") {
    temp_dir t;
    auto cfg = cfg_with(t, "");
    fs::create_directories(cfg.state_dir);
    mx::ops::console_user_add(cfg, "alice", "correct horse battery", false);
    mx::ops::console_user_add(cfg, "bob", "another long password", true);
    CHECK_THROWS_AS(mx::ops::console_user_add(cfg, "alice", "yet another password", false),
                    mx::ops::op_error);
    CHECK_THROWS_AS(mx::ops::console_user_add(cfg, "carol", "short", false), mx::ops::op_error);
    CHECK_THROWS_AS(mx::ops::console_user_add(cfg, "../x", "long enough password", false),
                    mx::ops::op_error);
    auto users = mx::ops::load_console_users(cfg);
    REQUIRE(users.size() == 2);
    CHECK(users["bob"].read_only);
    CHECK(users["alice"].hash.rfind("$argon2id$", 0) == 0);
    CHECK(users["alice"].hash.find("correct horse") == std::string::npos);
    CHECK(mx::ops::verify_password(users["alice"].hash, "correct horse battery"));
    CHECK_FALSE(mx::ops::verify_password(users["alice"].hash, "correct horse batterY"));
    struct stat st {};
    REQUIRE(::stat((mx::ops::console_dir(cfg) / "users.json").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    mx::ops::console_user_passwd(cfg, "alice", "a brand new password");
    CHECK(mx::ops::verify_password(mx::ops::load_console_users(cfg)["alice"].hash,
                                   "a brand new password"));
    mx::ops::console_user_remove(cfg, "bob");
    CHECK(mx::ops::load_console_users(cfg).size() == 1);
    CHECK_THROWS_AS(mx::ops::console_user_remove(cfg, "bob"), mx::ops::op_error);
}

TEST_CASE("a connector save is one transaction: settings and domains, or nothing", "[console]") {
    temp_dir t;
    test_env e(cfg_with(t, ""));
    fs::create_directories(e.c.state_dir);
    mx::ops::create_connector(e, "shop", {"drop_folder=/srv/drop/shop", "smtp.port=587"},
                              {"shop.test"});
    auto g0 = e.open_store().read().generation();
    mx::ops::update_connector(e, "shop", {"smtp.auth=generic"},
                              std::vector<std::string>{"shop.test", ".shop.test"});
    auto c = e.open_store().read().find_connector("shop", true);
    REQUIRE(c);
    CHECK(c->domains.size() == 2);
    CHECK(c->smtp.auth == mx::auth_method::generic);
    CHECK(e.open_store().read().generation() == g0 + 1);  // one commit for both
    // A bad port refuses the whole save: the domain list stays as it was.
    CHECK_THROWS_AS(mx::ops::update_connector(e, "shop", {"smtp.port=99999"},
                                              std::vector<std::string>{"other.test"}),
                    mx::ops::op_error);
    c = e.open_store().read().find_connector("shop", true);
    CHECK(c->domains.size() == 2);
    CHECK(c->smtp.port == 587);
    CHECK(e.open_store().read().generation() == g0 + 1);
}

TEST_CASE("a history file name comes only from a valid connector name", "[console]") {
    fs::path d = "/x";
    CHECK(mx::console::history_path(d, "shop") == d / "history-shop.bin");
    CHECK(mx::console::history_path(d, "") == d / "history.bin");
    CHECK(mx::console::history_path(d, "../../etc/passwd") == d / "history.bin");
    CHECK(mx::console::history_path(d, ".hidden") == d / "history.bin");
}
