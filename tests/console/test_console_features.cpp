// Unit tests of the console's second round: the bulk import it shares with mxctl (admin/ops),
// the mailbox search index, today's counts from the history ring, the doctor cache, the log
// report's bounded tail read and the OAuth2 state of a mailbox (never a secret).
#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <thread>

#include "console.hpp"
#include "console_test_env.hpp"

namespace fs = std::filesystem;
using console_test::cfg_with;
using console_test::temp_dir;
using console_test::test_env;

namespace {

void with_shop(test_env& e) {
    fs::create_directories(e.c.state_dir);
    mx::ops::create_connector(e, "shop", {"drop_folder=/srv/drop/shop"}, {"shop.test"});
}

bool contains(const std::vector<std::string>& v, const std::string& part) {
    for (const auto& s : v)
        if (s.find(part) != std::string::npos) return true;
    return false;
}

}  // namespace

TEST_CASE("mailbox import: every refused line is named and nothing is added", "[console]") {
    temp_dir t;
    test_env e(cfg_with(t, ""));
    with_shop(e);
    auto g0 = e.open_store().read().generation();
    std::string csv =
        "# comment\naddress,connector,target\nok1@shop.test,shop,\nnot an address,shop\n"
        "ok2@shop.test,nowhere\nx@other.test,shop\nOK1@shop.test,shop\n\"open,shop\n";
    // Parse errors first (the address, the open quote), each with its line.
    try {
        (void)mx::ops::parse_mailbox_import(csv, "up.csv");
        FAIL("no import_error");
    } catch (const mx::ops::import_error& err) {
        CHECK(err.problems().size() == 2);
        CHECK(contains(err.problems(), "up.csv: line 4: invalid address 'not an address'"));
        CHECK(contains(err.problems(), "up.csv: line 8: unterminated quote"));
    }
    // Store refusals: unknown connector, foreign domain, duplicate in the file — all of them.
    std::string csv2 =
        "address,connector\nok1@shop.test,shop\nok2@shop.test,nowhere\nx@other.test,shop\n"
        "OK1@shop.test,shop\n";
    auto rows = mx::ops::parse_mailbox_import(csv2, "up.csv");
    REQUIRE(rows.size() == 4);
    try {
        mx::ops::import_mailboxes(e, rows, "up.csv");
        FAIL("no import_error");
    } catch (const mx::ops::import_error& err) {
        CHECK(err.problems().size() == 3);
        CHECK(contains(err.problems(), "line 3: no connector named 'nowhere'"));
        CHECK(contains(err.problems(), "line 4:"));
        CHECK(contains(err.problems(), "line 5: mailbox ok1@shop.test already exists"));
    }
    // One answer for both kinds, in line order (the console and mxctl use this one).
    try {
        mx::ops::import_mailbox_text(e, csv, "up.csv");
        FAIL("no import_error");
    } catch (const mx::ops::import_error& err) {
        REQUIRE(err.problems().size() == 5);
        CHECK(err.problems()[0].find("line 4: invalid address") != std::string::npos);
        CHECK(err.problems()[1].find("line 5: no connector named 'nowhere'") != std::string::npos);
        CHECK(err.problems()[2].find("line 6:") != std::string::npos);
        CHECK(err.problems()[3].find("line 7: mailbox ok1@shop.test already exists") !=
              std::string::npos);
        CHECK(err.problems()[4].find("line 8: unterminated quote") != std::string::npos);
    }
    CHECK(e.open_store().read().generation() == g0);
    CHECK_FALSE(e.open_store().read().find_mailbox("ok1@shop.test"));
    // A good file: one commit for all.
    auto good = mx::ops::parse_mailbox_import(
        "address,connector\na@shop.test,shop\nb@shop.test,shop\n@shop.test,shop\n", "good.csv");
    CHECK(mx::ops::import_mailboxes(e, good, "good.csv") == 3);
    CHECK(e.open_store().read().generation() == g0 + 1);
    CHECK_THROWS_WITH(
        mx::ops::parse_mailbox_import(
            R"({"mailboxes": [{"address": "j@shop.test", "connector": "shop"}, {"address": 1}]})",
            "x.json"),
        Catch::Contains("x.json: entry 2: needs"));
    CHECK_THROWS_WITH(mx::ops::parse_mailbox_import("x@shop.test,shop\n", "h.csv"),
                      Catch::Contains("header"));
}

TEST_CASE("mailbox search: substring, any case, per connector, paged", "[console]") {
    mx::console::mailbox_index idx;
    for (int i = 0; i < 1000; ++i) {
        mx::mailbox m;
        m.address = "User" + std::to_string(i) + "@" + (i % 2 ? "odd.test" : "even.test");
        m.connector = i % 2 ? "odd" : "even";
        idx.boxes.push_back(m);
    }
    idx.build_search();
    std::size_t total = 0;
    auto hits = idx.search("user99", "", 0, 200, total);
    CHECK(total == 11);  // user99, user990..user999
    REQUIRE(hits.size() == 11);
    CHECK(idx.boxes[hits[0]].address == "User99@odd.test");
    hits = idx.search("@odd.test", "", 0, 200, total);
    CHECK(total == 500);
    CHECK(hits.size() == 200);
    hits = idx.search("@odd.test", "", 400, 200, total);  // the third page
    CHECK(hits.size() == 100);
    CHECK(idx.search("user1", "even", 0, 10, total).size() == 10);
    CHECK(total == 55);                          // the even ones of 10..19 and 100..199
    idx.search("test\nuser", "", 0, 10, total);  // never across two addresses
    CHECK(total == 0);
    idx.search("", "odd", 0, 0, total);
    CHECK(total == 500);
    // Past count_max the scan stops: the count is a lower bound, the page still complete.
    mx::console::mailbox_index big;
    for (int i = 0; i < 25000; ++i) {
        mx::mailbox m;
        m.address = "u" + std::to_string(i) + "@big.test";
        m.connector = "big";
        big.boxes.push_back(m);
    }
    big.build_search();
    bool capped = false;
    hits = big.search("@big.test", "", 0, 200, total, &capped);
    CHECK(capped);
    CHECK(total == mx::console::mailbox_index::count_max);
    CHECK(hits.size() == 200);
    hits = big.search("@big.test", "", 20000, 200, total, &capped);  // a deep page
    REQUIRE(hits.size() == 200);
    CHECK(big.boxes[hits[0]].address == big.boxes[20000].address);
    CHECK(total == 20200);
    hits = big.search("u2499", "", 0, 200, total, &capped);  // rare: counted exactly
    CHECK_FALSE(capped);
    CHECK(total == 11);
}

TEST_CASE("today's counts: since midnight from the ring, resets count from zero", "[console]") {
    using mx::console::sample;
    auto s = [](std::int64_t t, std::uint64_t acc) {
        sample x;
        x.time = t;
        x.accepted = acc;
        return x;
    };
    std::int64_t midnight = 1000;
    // The segment was created before midnight: the point at 990 is the base.
    auto r = mx::console::counts_since({s(900, 5), s(990, 10), s(1100, 15), s(1200, 2)}, s(1300, 7),
                                       midnight, 100);
    CHECK(r.counts.accepted == 5 + 2 + 5);  // 10->15, reset to 2, 2->7
    CHECK(r.from == midnight);
    // The ring starts after midnight: counted from its first point, which is said.
    r = mx::console::counts_since({s(1100, 15), s(1200, 20)}, s(1300, 21), midnight, 100);
    CHECK(r.counts.accepted == 6);
    CHECK(r.from == 1100);
    // The segment was created today: everything it counted is today's.
    r = mx::console::counts_since({s(1100, 15)}, s(1300, 21), midnight, 1050);
    CHECK(r.counts.accepted == 21);
}

TEST_CASE("the doctor cache: the program's findings, or why it could not run", "[console]") {
    mx::console::doctor_cache ok(
        {"/bin/echo",
         R"({"ok":false,"findings":[{"check":"drop","status":"warn","message":"<b>x</b>"}]})"},
        300);
    auto first = ok.get();  // never waits: the first answer is "checking"
    CHECK(first.time == 0);
    mx::console::doctor_result r;
    for (int i = 0; i < 100 && r.time == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        r = ok.get();
    }
    REQUIRE(r.time != 0);
    CHECK(r.error.empty());
    REQUIRE(r.findings.size() == 1);
    CHECK(r.findings[0]["message"] == "<b>x</b>");
    mx::console::doctor_cache bad({"/nonexistent/mxctl"}, 300);
    auto b = bad.run_now();
    CHECK_FALSE(b.error.empty());
    auto cmd = mx::console::doctor_command("", "/etc/x.toml");
    CHECK(cmd.back() == "probe");  // never the probe: it would count as mail
}

TEST_CASE("the log report reads only the tail of the log, from a whole line", "[console]") {
    temp_dir t;
    auto log = t.path / "mail.log";
    {
        std::ofstream f(log);
        for (int i = 0; i < 2000; ++i)
            f << "Dec  1 10:00:0" << i % 10 << " mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from "
              << "unknown[192.0.2." << i % 7 << "]: 550 5.1.1 <u" << i
              << "@shop.test>: Recipient address rejected: User unknown; from=<a@b.test> "
                 "to=<u"
              << i << "@shop.test> proto=ESMTP helo=<h>\n";
        f << "Dec  1 10:00:09 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[192.0.2.9]: "
             "550 5.1.1 <\"<script>x</script>\"@shop.test>: Recipient address rejected: User "
             "unknown; from=<a@b.test> to=<\"<script>x</script>\"@shop.test> proto=ESMTP "
             "helo=<h>\n";
    }
    auto size = fs::file_size(log);
    mx::console::log_view v(log.string(), 64 * 1024, nullptr);
    auto j = v.report();
    CHECK((*j)["read"]["size"] == size);
    CHECK((*j)["read"]["bytes"].get<std::size_t>() <= 64 * 1024);
    CHECK((*j)["totals"]["unparsed"] == 0);  // the cut first line was skipped
    auto rejected = (*j)["totals"]["rejected"].get<std::size_t>();
    CHECK(rejected > 100);
    CHECK(rejected < 2001);
    CHECK((*j)["rejects"]["by_reason"]["user_unknown"] == rejected);
    // Hostile text stays data: the page escapes it (the browser test looks at that).
    CHECK((*j)["top_rejected_recipients"].dump().find("<script>x</script>") != std::string::npos);
    mx::console::log_view none("", 1024, nullptr);
    CHECK_THROWS_WITH(none.report(), Catch::Contains("postfix_log"));
    mx::console::log_view missing((t.path / "nope.log").string(), 1024, nullptr);
    CHECK_THROWS_WITH(missing.report(), Catch::Contains("cannot open"));
}

TEST_CASE("OAuth2 state: stored or not, expiry and the last refresh error, never a secret",
          "[console]") {
    temp_dir t;
    // A token endpoint that refuses connections: the refresh fails at once.
    test_env e(cfg_with(t, "[oauth]\ngoogle_token_url = \"http://127.0.0.1:1/token\"\n"));
    fs::create_directories(e.c.state_dir);
    mx::ops::create_connector(e, "g", {"drop_folder=/srv/drop/g", "smtp.auth=google"}, {"g.test"});
    auto m = mx::ops::add_mailbox(e, "box@g.test", "g", "");
    auto st = mx::ops::mailbox_oauth_status(e, m, mx::auth_method::google);
    CHECK(st.summary(0) == "no client id");
    mx::ops::oauth_update u;
    u.client_id = "client-1";
    u.refresh_token = "SECRET-REFRESH-TOKEN";
    m = mx::ops::set_mailbox_oauth(e, "box@g.test", u);
    st = mx::ops::mailbox_oauth_status(e, m, mx::auth_method::google);
    CHECK(st.refresh_token);
    CHECK_FALSE(st.client_secret);
    CHECK(st.summary(0) == "not yet used");
    auto v = e.open_store().read();
    auto [mb, method] = mx::ops::find_oauth_mailbox(v, "box@g.test");
    CHECK(method == mx::auth_method::google);
    CHECK_THROWS_AS(mx::ops::refresh_mailbox_oauth(e, mb, method), mx::ops::op_error);
    st = mx::ops::mailbox_oauth_status(e, mb, method);
    CHECK(st.summary(0) == "refresh failed");
    CHECK(st.last_error.find("127.0.0.1:1") != std::string::npos);
    CHECK(st.last_error.find("SECRET") == std::string::npos);
    CHECK(st.last_error_time > 0);
}
