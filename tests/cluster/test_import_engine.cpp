// The engine in cluster mode against a real PostgreSQL (test_import_pg_fixture.hpp), in process:
// a dead node's claimed file whose delivery it made before dying is taken over without a
// second copy; a recipient imported by another node is a duplicate; one held by a live node
// is left to it; PostgreSQL unreachable: nothing is delivered, the file waits.
#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include "global/journal.hpp"
#include "importer_fixture.hpp"
#include "test_import_pg_fixture.hpp"
#include "util/hex.hpp"

namespace {

using mx::importer::testing::fixture;
using mx::test::spit;

const std::string mail =
    "Return-Path: <s@remote.example>\r\nDelivered-To: info@example.test\r\n"
    "From: s@remote.example\r\nSubject: cluster\r\nMessage-ID: <c1@test>\r\n\r\nbody\r\n";

std::string cluster_toml(const std::string& conninfo, const std::string& node) {
    return "\n[cluster]\npostgresql = \"" + conninfo + "\"\nnode = \"" + node +
           "\"\nlease_seconds = 5\n";
}

void sql(const std::string& q, const std::vector<std::string>& args = {}) {
    auto conn = mx::cluster::connect(mx::test::pg_config("t"), "test");
    pqxx::work tx(*conn);
    if (args.empty())
        tx.exec0(q);
    else if (args.size() == 2)
        tx.exec_params0(q, args[0], args[1]);
    else
        tx.exec_params0(q, args[0], args[1], args[2], args[3]);
    tx.commit();
}

std::string one(const std::string& q) {
    auto conn = mx::cluster::connect(mx::test::pg_config("t"), "test");
    pqxx::work tx(*conn);
    auto r = tx.exec(q);
    return r.empty() || r[0][0].is_null() ? std::string() : r[0][0].as<std::string>();
}

// Batches until `done` (the lease thread needs a moment before takeovers start).
template <typename Done>
void run_until(fixture& fx, Done&& done) {
    for (int i = 0; i < 100 && !done(); ++i) {
        fx.drain();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

bool ready() {
    if (!mx::test::pg_conninfo().empty()) return true;
    WARN("no private PostgreSQL here (needs root and postgresql-15): not tested");
    return false;
}

}  // namespace

TEST_CASE("cluster engine: a dead node's delivered file is taken over without a second copy") {
    if (!ready()) return;
    auto conn = mx::cluster::connect(mx::test::pg_config("t"), "test");
    mx::test::fresh_schema(*conn);
    fixture fx(cluster_toml(mx::test::pg_conninfo(), "node-b"));
    const std::string fp = mx::util::sha256_hex(mail);
    const std::string spec = mx::importer::effective_target(fx.cfg, "", "", "info@example.test");
    // Node A claimed the file, reserved it, linked it into the mailbox and died before its mark.
    auto work_a = fx.fold.drop / ".work" / "node-a";
    std::filesystem::create_directories(work_a);
    spit(work_a / "n,one.mx", mail);
    const std::string loc = "1700000000.M1P1Q1.node-a,S=" + std::to_string(mail.size());
    std::filesystem::create_directories(fx.maildir_new("info@example.test"));
    std::filesystem::create_hard_link(work_a / "n,one.mx",
                                      fx.maildir_new("info@example.test") / loc);
    sql("INSERT INTO mxc.importer_leases (node, expires_at) VALUES ('node-a', now() - "
        "interval '1 minute')");
    sql("INSERT INTO mxc.imports (fingerprint, recipient_key, state, node, target, location) "
        "VALUES ($1, $2, 'pending', 'node-a', $3, $4)",
        {fp, "info@example.test", spec, loc});

    run_until(fx, [&] { return one("SELECT state FROM mxc.imports") == "imported"; });
    CHECK(one("SELECT state || ' ' || node || ' ' || location FROM mxc.imports") ==
          "imported node-b " + loc);
    CHECK(fx.count(fx.maildir_new("info@example.test")) == 1);  // A's copy, no second one
    CHECK(fx.count(work_a) == 0);
    CHECK(fx.count(fx.fold.drop / ".work" / "node-b") == 0);
}

TEST_CASE("cluster engine: imported elsewhere is a duplicate; held by a live node waits") {
    if (!ready()) return;
    auto conn = mx::cluster::connect(mx::test::pg_config("t"), "test");
    mx::test::fresh_schema(*conn);
    fixture fx(cluster_toml(mx::test::pg_conninfo(), "node-b"));
    const std::string fp = mx::util::sha256_hex(mail);
    const std::string other = mail + "another\r\n";
    sql("INSERT INTO mxc.importer_leases (node, expires_at) VALUES ('node-a', now() + "
        "interval '1 hour')");
    sql("INSERT INTO mxc.imports (fingerprint, recipient_key, state, node) VALUES ($1, $2, "
        "'imported', 'node-a')",
        {fp, "info@example.test"});
    // Held by live node a, its planned delivery not there yet.
    const std::string spec = mx::importer::effective_target(fx.cfg, "", "", "info@example.test");
    sql("INSERT INTO mxc.imports (fingerprint, recipient_key, state, node, target, location) "
        "VALUES ($1, $2, 'pending', 'node-a', $3, $4)",
        {mx::util::sha256_hex(other), "info@example.test", spec, "not-yet"});
    spit(fx.fold.new_dir() / "dup.mx", mail);
    spit(fx.fold.new_dir() / "held.mx", other);
    auto st = fx.drain();
    CHECK(st.duplicates == 1);
    CHECK(st.imported == 0);
    CHECK(fx.count(fx.maildir_new("info@example.test")) == 0);
    // The held one waits in node b's work folder (a retry), the duplicate is gone.
    auto work_b = fx.fold.drop / ".work" / "node-b";
    CHECK(fx.count(work_b) == 1);
    CHECK(std::filesystem::exists(work_b / "n,held.mx"));
}

TEST_CASE("cluster engine: PostgreSQL unreachable, nothing is delivered and nothing lost") {
    if (!ready()) return;
    mx::test::temp_dir nowhere("no-pg");
    fixture fx(cluster_toml("host=" + nowhere.path.string() + " port=1 dbname=x connect_timeout=1",
                            "node-b"));
    spit(fx.fold.new_dir() / "one.mx", mail);
    auto st = fx.drain();
    CHECK(st.imported == 0);
    CHECK(st.deferred == 1);
    CHECK(fx.count(fx.maildir_new("info@example.test")) == 0);
    CHECK(fx.count(fx.fold.drop / ".work" / "node-b") == 1);
}
