// Secrets sealed with AES-256-GCM in mxc.secrets: round trip, wrong key / changed bytes / another
// name refused, key file checks, and put -> sync into a local store against a real PostgreSQL.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "global/cluster_secrets.hpp"
#include "lib/test_support.hpp"
#include "test_import_pg_fixture.hpp"

using namespace mx::cluster;

namespace {

secret_key key_of(unsigned char b) {
    secret_key k{};
    k.fill(b);
    return k;
}

std::filesystem::path write_key(const std::filesystem::path& dir, const std::string& name,
                                const std::string& data, mode_t mode) {
    auto p = dir / name;
    mx::test::spit(p, data);
    ::chmod(p.c_str(), mode);
    return p;
}

}  // namespace

TEST_CASE("cluster secrets: sealed values open only with the key, the name and unchanged bytes") {
    const auto k = key_of(7);
    auto s = seal_secret(k, "smtp/relay/password", "hunter2");
    CHECK(s.size() == 12 + 7 + 16);
    CHECK(s.find("hunter2") == std::string::npos);
    CHECK(open_secret(k, "smtp/relay/password", s) == "hunter2");
    CHECK(seal_secret(k, "smtp/relay/password", "hunter2") != s);  // a fresh nonce each time
    CHECK(open_secret(k, "e", seal_secret(k, "e", "")).empty());
    CHECK_THROWS_AS(open_secret(key_of(8), "smtp/relay/password", s), secret_error);
    CHECK_THROWS_AS(open_secret(k, "smtp/other/password", s), secret_error);
    for (std::size_t i : {std::size_t{0}, std::size_t{13}, s.size() - 1}) {
        auto t = s;
        t[i] = static_cast<char>(t[i] ^ 1);
        CHECK_THROWS_AS(open_secret(k, "smtp/relay/password", t), secret_error);
    }
    CHECK_THROWS_AS(open_secret(k, "x", "short"), secret_error);
    try {
        open_secret(key_of(9), "n", s);
    } catch (const secret_error& e) {
        CHECK(std::string(e.what()).find("hunter2") == std::string::npos);
    }
}

TEST_CASE("cluster secrets: the key file") {
    mx::test::temp_dir d("cluster-key");
    const std::string hex(64, 'a');
    CHECK_FALSE(load_key(d.path / "missing").has_value());
    auto ok = load_key(write_key(d.path, "hex", hex + "\n", 0600));
    REQUIRE(ok);
    CHECK((*ok)[0] == 0xaa);
    auto raw = load_key(write_key(d.path, "raw", std::string(32, '\x01'), 0400));
    REQUIRE(raw);
    CHECK((*raw)[31] == 1);
    CHECK_THROWS_AS(load_key(write_key(d.path, "group", hex, 0640)), key_error);
    CHECK_THROWS_AS(load_key(write_key(d.path, "other", hex, 0604)), key_error);
    CHECK_THROWS_AS(load_key(write_key(d.path, "short", std::string(63, 'a'), 0600)), key_error);
    CHECK_THROWS_AS(load_key(write_key(d.path, "nothex", std::string(64, 'g'), 0600)), key_error);
    std::filesystem::create_symlink(d.path / "hex", d.path / "link");
    CHECK_THROWS_AS(load_key(d.path / "link"), key_error);
    std::filesystem::create_directory(d.path / "dir");
    ::chmod((d.path / "dir").c_str(), 0700);
    CHECK_THROWS_AS(load_key(d.path / "dir"), key_error);
}

TEST_CASE("cluster secrets: put, remove by prefix and sync into a local store") {
    if (mx::test::pg_conninfo().empty()) {
        WARN("no private PostgreSQL here (needs root and postgresql-15): not tested");
        return;
    }
    mx::test::temp_dir d("cluster-secrets");
    auto c = mx::test::pg_config("a");
    c.key_file = write_key(d.path, "cluster.key", std::string(64, 'b'), 0600);
    auto conn = connect(c, "test");
    mx::test::fresh_schema(*conn);
    {
        pqxx::work tx(*conn);
        put_secret(tx, c, "mailbox/a@d/oauth", "token-1");
        put_secret(tx, c, "mailbox/a@d/password", "pw-1");
        put_secret(tx, c, "smtp/relay/password", "pw-2");
        tx.commit();
    }
    {
        pqxx::read_transaction tx(*conn);
        auto n = tx.exec1(
            "SELECT count(*) FROM mxc.secrets WHERE position('pw-1'::bytea in sealed) > 0");
        CHECK(n[0].as<int>() == 0);  // at rest: never the plain value
    }
    auto local = mx::secret_store::open(d.path / "local", false);
    local.set("stale/one", "old");
    CHECK(sync_secrets(*conn, c, local) == 3);
    CHECK(local.get("mailbox/a@d/oauth") == std::optional<std::string>("token-1"));
    CHECK(local.get("smtp/relay/password") == std::optional<std::string>("pw-2"));
    CHECK_FALSE(local.get("stale/one"));

    {
        pqxx::work tx(*conn);
        remove_secret_prefix(tx, "mailbox/a@d/");
        put_secret(tx, c, "smtp/relay/password", "pw-3");
        tx.commit();
    }
    CHECK(sync_secrets(*conn, c, local) == 1);
    CHECK(local.names() == std::vector<std::string>{"smtp/relay/password"});
    CHECK(local.get("smtp/relay/password") == std::optional<std::string>("pw-3"));

    // A row that does not open (another cluster's key) is left alone locally, the rest syncs.
    {
        pqxx::work tx(*conn);
        auto other = c;
        other.key_file = write_key(d.path, "other.key", std::string(64, 'c'), 0600);
        put_secret(tx, other, "smtp/relay/password", "evil");
        tx.commit();
    }
    CHECK(sync_secrets(*conn, c, local) == 0);
    CHECK(local.get("smtp/relay/password") == std::optional<std::string>("pw-3"));

    // Without a key file: nothing changes, put refuses.
    auto nokey = c;
    nokey.key_file = d.path / "absent.key";
    CHECK(sync_secrets(*conn, nokey, local) == 0);
    CHECK(local.get("smtp/relay/password") == std::optional<std::string>("pw-3"));
    pqxx::work tx(*conn);
    CHECK_THROWS_AS(put_secret(tx, nokey, "x", "y"), key_error);
}
