// The RCPT decision table (global/recipient_check.hpp), shared by mx-milter and mxctl check.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>

#include "global/recipient_check.hpp"
#include "lib/store_fixture.hpp"

namespace fs = std::filesystem;

namespace {

struct fixture : mx::test::store_fixture {
    mx::check_policy policy;
    fixture() {
        using mx::test::make_connector;
        using mx::test::make_mailbox;
        s->write([](mx::store_tx& tx) {
            auto a = make_connector("demo", {"example.test", "xn--bcher-kva.example"});
            a.drop_folder = "/srv/drop";
            tx.add_connector(a);
            auto off = make_connector("off", {"off.test"}, false);
            off.drop_folder = "/srv/off";
            tx.add_connector(off);
            auto ca = make_connector("ca", {"catchall.test"});
            ca.drop_folder = "/srv/ca";
            tx.add_connector(ca);
            for (auto addr :
                 {"info@example.test", "sales@example.test", "user@xn--bcher-kva.example"})
                tx.add_mailbox(make_mailbox(addr, "demo"));
            tx.add_mailbox(make_mailbox("x@off.test", "off"));
            tx.add_mailbox(make_mailbox("@catchall.test", "ca"));
        });
    }
    mx::check_result check(std::string_view arg) { return mx::check_recipient(*s, policy, arg); }
};

}  // namespace

TEST_CASE("decision table", "[decision]") {
    fixture f;
    struct row {
        const char* arg;
        mx::decision d;
        const char* reply;
        const char* matched;
    };
    const row rows[] = {
        {"<info@example.test>", mx::decision::accept, "", "exact"},
        {"<INFO@Example.Test>", mx::decision::accept, "", "exact"},
        {"<info+news@example.test>", mx::decision::accept, "", "subaddress"},
        {"<anything@catchall.test>", mx::decision::accept, "", "catch-all"},
        {"<user@bücher.example>", mx::decision::accept, "", "exact"},
        {"<postmaster@example.test>", mx::decision::accept, "", "postmaster"},
        {"<nobody@example.test>", mx::decision::reject,
         "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown", ""},
        {"<x@off.test>", mx::decision::tempfail,
         "450 4.2.1 <x@off.test>: Recipient address rejected: Mailbox temporarily unavailable", ""},
        {"<y@elsewhere.test>", mx::decision::not_ours, "", ""},
        {"info@example.test", mx::decision::reject, "501 5.1.3 Bad recipient address syntax", ""},
        {"<>", mx::decision::reject, "501 5.1.3 Bad recipient address syntax", ""},
        {"", mx::decision::reject, "501 5.1.3 Bad recipient address syntax", ""},
    };
    for (const auto& r : rows) {
        INFO(r.arg);
        auto res = f.check(r.arg);
        CHECK(res.verdict == r.d);
        CHECK(res.reply() == r.reply);
        CHECK(res.matched_by == r.matched);
    }
}

TEST_CASE("hostile arguments get 501, never a crash", "[decision][security]") {
    fixture f;
    std::string huge = "<" + std::string(300, 'a') + "@example.test>";
    CHECK(f.check(huge).reply() == "501 5.1.3 Bad recipient address syntax");
    CHECK(f.check(std::string_view("<in\0fo@example.test>", 20)).code == "501");
    f.policy.smtputf8 = false;
    CHECK(f.check("<jörg@example.test>").code == "501");
}

TEST_CASE("policy options", "[decision]") {
    fixture f;
    SECTION("unknown domains can be rejected") {
        f.policy.reject_unknown_domains = true;
        auto r = f.check("<y@elsewhere.test>");
        CHECK(r.verdict == mx::decision::reject);
        CHECK(r.code == "550");
        CHECK(r.dsn == "5.1.2");
    }
    SECTION("postmaster can be switched off") {
        f.policy.accept_postmaster = false;
        CHECK(f.check("<postmaster@example.test>").verdict == mx::decision::reject);
    }
    SECTION("reply text is configurable and stays one line") {
        f.policy.reject_text = "{address}: no such user here\r\nInjected: yes";
        auto r = f.check("<nobody@example.test>");
        CHECK(r.reply() == "550 5.1.1 <nobody@example.test>: no such user here  Injected: yes");
    }
    SECTION("hiding existence gives no user detail") {
        f.policy.hide_existence = true;
        auto r = f.check("<nobody@example.test>");
        CHECK(r.reply() == "550 5.1.1 Recipient address rejected");
    }
    SECTION("no subaddressing when the delimiter is empty") {
        f.policy.subaddress_delimiter = "";
        CHECK(f.check("<info+news@example.test>").verdict == mx::decision::reject);
    }
}

TEST_CASE("a store error is a 451, never a 5xx", "[decision]") {
    fixture f;
    // A domain pointing to a connector that vanished is an inconsistency: temporary.
    f.s->write([](mx::store_tx& tx) { tx.clear_all(); });
    auto r = f.check("<info@example.test>");
    CHECK(r.verdict == mx::decision::not_ours);
    CHECK(r.cause == mx::check_cause::table);
    // Callers act on the cause, never on the reason's text.
    CHECK(f.check("<no-at-sign").cause == mx::check_cause::malformed);
    // Simulate a broken store: a store opened on a directory that is not one.
    fs::path broken = f.dir.path / "broken";
    fs::create_directories(broken);
    CHECK_THROWS(mx::store::open(broken / "missing", true));
}

// The per-thread memos of the RCPT path (a domain's connector and its state per store
// snapshot; a mailbox record's connector per record bytes) must never answer from an older
// state: every change below is decided on the next RCPT of the same thread.
TEST_CASE("every committed change is decided at the next RCPT of the same thread", "[decision]") {
    fixture f;
    using mx::decision;
    auto verdict = [&f](std::string_view arg) { return f.check(arg).verdict; };
    REQUIRE(verdict("<info@example.test>") == decision::accept);
    REQUIRE(verdict("<x@off.test>") == decision::tempfail);
    f.s->write([](mx::store_tx& tx) {
        auto c = *tx.find_connector("demo", true);
        c.active = false;
        tx.update_connector(c);
    });
    CHECK(f.check("<info@example.test>").code == "450");
    f.s->write([](mx::store_tx& tx) {
        auto c = *tx.find_connector("demo", true);
        c.active = true;
        tx.update_connector(c);
    });
    CHECK(verdict("<info@example.test>") == decision::accept);
    f.s->write([](mx::store_tx& tx) { tx.remove_mailbox("info@example.test"); });
    CHECK(verdict("<info@example.test>") == decision::reject);
    f.s->write([](mx::store_tx& tx) {
        tx.remove_mailbox("sales@example.test");
        tx.remove_domain("demo", "example.test");
    });
    CHECK(verdict("<info@example.test>") == decision::not_ours);
    // The domain and the mailbox come back on another connector (the same mailbox key with
    // new record bytes).
    f.s->write([](mx::store_tx& tx) {
        tx.add_domain("ca", "example.test");
        tx.add_mailbox(mx::test::make_mailbox("info@example.test", "ca"));
    });
    CHECK(f.check("<info@example.test>").connector == "ca");
    CHECK(verdict("<info@example.test>") == decision::accept);
    // Another store opened in this process (its own transaction ids may equal the first
    // one's) is its own: nothing it answers comes from the first store's memo.
    mx::test::temp_dir other_dir{"store-other"};
    {
        auto other = mx::store::open(other_dir.path / "store", false);
        other.write([](mx::store_tx& tx) {
            tx.add_connector(mx::test::make_connector("demo", {"example.test"}, false));
        });
        CHECK(mx::check_recipient(other, f.policy, "<info@example.test>").code == "450");
    }
    CHECK(verdict("<info@example.test>") == decision::accept);
}

// Whatever the milter accepts, the importer can deliver; whatever it refuses, the importer
// fails. One table of recipients, both sides asked (postmaster@ was accepted at SMTP time and
// bounced later, a backscatter source, before decide_import existed).
TEST_CASE("milter and importer take the same decision for every recipient", "[decision]") {
    fixture f;
    using k = mx::import_decision::kind;
    struct row {
        const char* rcpt;
        const char* folder;  // connector whose drop folder holds the file
    };
    const row rows[] = {
        {"info@example.test", "demo"},       {"info+news@example.test", "demo"},
        {"nobody@example.test", "demo"},     {"postmaster@example.test", "demo"},
        {"Postmaster@EXAMPLE.test", "demo"}, {"postmaster@catchall.test", "ca"},
        {"anyone@catchall.test", "ca"},      {"x@off.test", "off"},
        {"postmaster@off.test", "off"},      {"y@elsewhere.test", "demo"},
        {"info@example.test", "ca"},  // a file in the wrong connector's folder
    };
    for (bool accept_postmaster : {true, false}) {
        f.policy.accept_postmaster = accept_postmaster;
        for (const auto& r : rows) {
            INFO(r.rcpt << " in " << r.folder << " accept_postmaster=" << accept_postmaster);
            auto parsed = mx::parse_address(r.rcpt);
            REQUIRE(std::holds_alternative<mx::address>(parsed));
            const auto& a = std::get<mx::address>(parsed);
            auto v = f.s->read();
            auto milter = mx::check_address(v, f.policy, a);
            auto importer = mx::decide_import(v, f.policy, a, r.folder);
            bool delivered = importer.what == k::mailbox || importer.what == k::postmaster;
            bool accepted = milter.verdict == mx::decision::accept && milter.connector == r.folder;
            CHECK(delivered == accepted);
            CHECK((importer.what == k::tempfail) == (milter.verdict == mx::decision::tempfail));
            if (milter.matched_by == "postmaster") {
                CHECK(importer.what == k::postmaster);
            }
        }
    }
    f.policy.accept_postmaster = true;
    auto v = f.s->read();
    auto pm = mx::decide_import(
        v, f.policy, std::get<mx::address>(mx::parse_address("postmaster@example.test")), "demo");
    CHECK(pm.what == k::postmaster);
    CHECK(pm.mailbox == "postmaster@example.test");
    // A real postmaster mailbox wins over the installation-wide destination.
    f.s->write([](mx::store_tx& tx) {
        mx::mailbox m;
        m.address = "postmaster@example.test";
        m.connector = "demo";
        tx.add_mailbox(m);
    });
    auto v2 = f.s->read();
    pm = mx::decide_import(
        v2, f.policy, std::get<mx::address>(mx::parse_address("postmaster@example.test")), "demo");
    CHECK(pm.what == k::mailbox);
}

TEST_CASE("postmaster_target defaults under mail_root and resolves relative paths", "[config]") {
    auto c = mx::parse_config("mail_root = \"/var/mail/mx\"\n", "/etc/mx/mx.toml");
    CHECK(c.effective_postmaster_target() == "maildir:/var/mail/mx/postmaster");
    c = mx::parse_config("postmaster_target = \"maildir:pm\"\n", "/etc/mx/mx.toml");
    CHECK(c.effective_postmaster_target() == "maildir:/etc/mx/pm");
    c = mx::parse_config("postmaster_target = \"webhook:https://app.test/pm\"\n",
                         "/etc/mx/mx.toml");
    CHECK(c.effective_postmaster_target() == "webhook:https://app.test/pm");
    CHECK_THROWS_AS(mx::parse_config("postmaster_target = \"/var/mail/pm\"\n", "/etc/mx/mx.toml"),
                    mx::config_error);
}
