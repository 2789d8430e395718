// journal keys: every key part derived from input is bounded (LMDB refuses keys over 511
// bytes); long parts keep a readable prefix and a hash of the whole, lookups use the same
// function, and no short part can equal a hashed one.
#include <catch2/catch.hpp>

#include "importer_fixture.hpp"

using namespace mx::importer;
using namespace mx::importer::testing;

TEST_CASE("key_part: short parts unchanged, long ones bounded, distinct and readable",
          "[journal]") {
    CHECK(journal::key_part("<a@b>") == "<a@b>");
    std::string s(journal::key_part_max - 1, 'x');
    CHECK(journal::key_part(s) == s);
    std::string a(600, 'a'), b = a;
    b.back() = 'b';
    auto ka = journal::key_part(a), kb = journal::key_part(b);
    CHECK(ka.size() == journal::key_part_max);
    CHECK(kb.size() == journal::key_part_max);
    CHECK(ka != kb);
    CHECK(ka.rfind("aaaaaaaaaa", 0) == 0);  // a readable prefix
    CHECK(journal::key_part(a) == ka);      // stable
    CHECK(journal::key_part(std::string(5000, ' ')).find(' ') == std::string::npos);
    // UTF-8 is not cut in the middle of a sequence
    std::string u;
    while (u.size() < 800) u += "\xc3\xa9";
    auto ku = journal::key_part(u);
    auto tilde = ku.find('~');
    REQUIRE(tilde != std::string::npos);
    std::string prefix = ku.substr(0, tilde);
    while (!prefix.empty() && prefix.back() == '_') prefix.pop_back();
    CHECK(prefix.size() % 2 == 0);
}

TEST_CASE("journal writes and finds records with 2000-byte keys", "[journal]") {
    fixture fx;
    const std::string fp(64, 'f');
    const std::string rcpt = std::string(1500, 'r') + "@example.test";
    const std::string mid = "<" + std::string(2000, 'm') + ">";
    const std::string file(2000, 'n');
    const std::string work = "/" + std::string(3000, 'w');
    fx.jr->write([&](mx::lmdb::txn& t) {
        fx.jr->put_delivery(t, fp, rcpt, {{"state", "imported"}, {"time", 1}});
        fx.jr->index(t, file, fp, mid, std::string(700, 'q'), {{"time", 1}});
        fx.jr->put_retry(t, work, {{"attempts", 3}});
    });
    auto t = fx.jr->read();
    CHECK(fx.jr->delivery(t, fp, rcpt));
    auto d = fx.jr->deliveries_of(t, fp);
    REQUIRE(d.size() == 1);
    CHECK(d[0].first == rcpt);  // the recipient as given, not the hashed key
    const std::pair<journal::by, std::string> queries[] = {
        {journal::by::message_id, mid},
        {journal::by::file, file},
        {journal::by::queue_id, std::string(700, 'q')}};
    for (const auto& [what, key] : queries) {
        auto found = fx.jr->lookup(t, what, key);
        REQUIRE(found.size() == 1);
        CHECK(found[0].first == fp);
    }
    CHECK(fx.jr->lookup(t, journal::by::message_id, "<" + std::string(2000, 'm') + "x>").empty());
    auto r = fx.jr->retry(t, work);
    REQUIRE(r);
    CHECK((*r)["attempts"] == 3);
    CHECK((*r)["path"] == work);
}
