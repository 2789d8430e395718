// Unit tests of mx-milter's pure parts: decision -> milter reply mapping, reply-text escaping,
// counters, netstring framing, socketmap answers and the virtual(8) map, on a temporary store.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cstdio>
#include <fstream>

#include "fixture.hpp"
#include "milter.hpp"

using namespace mx;
using namespace mx::milter;

namespace {

check_result result(decision d, const char* code = "", const char* dsn = "", const char* text = "",
                    const char* conn = "") {
    check_result r;
    r.verdict = d;
    r.code = code;
    r.dsn = dsn;
    r.text = text;
    r.connector = conn;
    return r;
}

std::unique_ptr<daemon_state> make_state(milter_test::installation& inst) {
    auto st = std::make_unique<daemon_state>();
    st->cfg = inst.cfg;
    st->set_policy(std::make_shared<const check_policy>(check_policy::from(inst.cfg)));
    st->store = std::make_unique<store_holder>(inst.cfg.store_dir());
    st->tables = std::make_unique<postfix_tables_writer>((inst.dir / "vmap.regexp").string(),
                                                         (inst.dir / "domains").string());
    st->shm = shm_state::attach(inst.cfg);
    return st;
}

}  // namespace

TEST_CASE("decision -> milter reply", "[units]") {
    CHECK(to_reply(result(decision::accept)).act == action::accept);
    CHECK(to_reply(result(decision::not_ours)).act == action::accept);
    auto rej = to_reply(result(decision::reject, "550", "5.1.1", "<a@b>: User unknown"));
    CHECK(rej.act == action::reject);
    CHECK(rej.code == "550");
    CHECK(rej.dsn == "5.1.1");
    CHECK(rej.text == "<a@b>: User unknown");
    auto tmp = to_reply(result(decision::tempfail, "450", "4.2.1", "off"));
    CHECK(tmp.act == action::tempfail);
    CHECK(tmp.code == "450");
    // Inconsistent code/verdict (never a 5xx for a tempfail): safe 451 4.3.0.
    auto bad = to_reply(result(decision::tempfail, "550", "5.1.1", "x"));
    CHECK(bad.act == action::tempfail);
    CHECK(bad.code == "451");
    CHECK(bad.dsn == "4.3.0");
    auto bad2 = to_reply(result(decision::reject, "", "", "x"));
    CHECK(bad2.code == "451");
}

TEST_CASE("smfi_setreply text: '%' doubled, one line, bounded", "[units]") {
    CHECK(setreply_text("100% <a%b@c>") == "100%% <a%%b@c>");
    CHECK(setreply_text("a\r\nb\0c") == "a  b");
    CHECK(setreply_text(std::string("a\0b", 3)) == "a b");
    CHECK(setreply_text(std::string(5000, 'x')).size() <= 980);
    CHECK(setreply_text(std::string(5000, '%')).size() <= 980);
}

TEST_CASE("internal errors are 451 4.3.0, syntax errors 501 5.1.3", "[units]") {
    auto r = internal_error_result("<a@b.test>", "boom");
    CHECK(r.reply() == "451 4.3.0 <a@b.test>: Temporary lookup failure");
    CHECK(internal_error_result("garbage", "boom").reply() == "451 4.3.0 Temporary lookup failure");
    check_policy p;
    CHECK(check_recipient_syntax_only(p, "<a@b.test>") == std::nullopt);
    CHECK(check_recipient_syntax_only(p, "a@b.test")->reply() ==
          "501 5.1.3 Bad recipient address syntax");
}

TEST_CASE("counters by decision", "[units]") {
    milter_test::installation inst("units-count", "", false);
    auto shm = shm_state::attach(inst.cfg);
    count(&shm, result(decision::accept, "", "", "", "c1"));
    count(&shm, result(decision::reject, "550", "5.1.1", "", "c1"));
    count(&shm, result(decision::tempfail, "450", "4.2.1", "", "c1"));
    count(&shm, result(decision::tempfail, "451", "4.3.0", "", "c1"));
    count(&shm, result(decision::tempfail, "451", "4.3.0", "", ""));
    count(&shm, result(decision::reject, "501", "5.1.3"));
    count(&shm, result(decision::not_ours));
    count(&shm, result(decision::reject, "550", "5.1.2"));  // unknown domain rejected
    count(nullptr, result(decision::accept));               // no segment: no crash
    auto& c = shm.counters("c1");
    CHECK(c.accepted == 1);
    CHECK(c.rejected_unknown == 1);
    CHECK(c.tempfailed_inactive == 1);
    CHECK(c.tempfailed_error == 1);
    CHECK(shm.layout().tempfailed_error_unattributed == 1);
    CHECK(shm.layout().rejected_syntax == 1);
    CHECK(shm.layout().not_ours == 2);
}

TEST_CASE("netstring framing", "[units]") {
    CHECK(netstring("OK x") == "4:OK x,");
    auto r = parse_netstring("3:abc,rest", 100);
    REQUIRE(r);
    CHECK(r->first == "abc");
    CHECK(r->second == 6);
    CHECK(parse_netstring("", 100) == std::nullopt);
    CHECK(parse_netstring("12", 100) == std::nullopt);
    CHECK(parse_netstring("3:ab", 100) == std::nullopt);
    CHECK(parse_netstring("0:,", 100)->first.empty());
    CHECK_THROWS_AS(parse_netstring("3:abcd", 100), netstring_error);
    CHECK_THROWS_AS(parse_netstring("x:", 100), netstring_error);
    CHECK_THROWS_AS(parse_netstring(":abc", 100), netstring_error);
    CHECK_THROWS_AS(parse_netstring("101:", 100), netstring_error);
    CHECK_THROWS_AS(parse_netstring("00000000001:", 1000000000), netstring_error);
}

TEST_CASE("the netstring fuzz corpus replays without surprises", "[units]") {
    // tests/fuzz/corpus/netstring (seeds + what fuzz_netstring found): every input ends in a
    // parsed payload, "need more bytes" or netstring_error, never anything else.
    std::size_t files = 0;
    for (const auto& e : std::filesystem::directory_iterator(MX_NETSTRING_CORPUS)) {
        std::ifstream f(e.path(), std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        std::string_view in(bytes);
        ++files;
        try {
            while (auto r = parse_netstring(in, socketmap_max_request)) {
                REQUIRE(r->second <= in.size());
                REQUIRE(r->first.size() <= socketmap_max_request);
                in.remove_prefix(r->second);
            }
        } catch (const netstring_error&) {
        }
    }
    CHECK(files >= 10);
}

TEST_CASE("drop folder values for virtual(8)", "[units]") {
    connector c;
    c.drop_folder = "/srv/drop";
    CHECK(drop_folder_value(c) == "srv/drop/");
    c.drop_folder = "/srv/drop/";
    CHECK(drop_folder_value(c) == "srv/drop/");
    for (const char* bad : {"", "relative/x", "/", "/a/../etc", "/a/..", "/a/./b", "/a\nb"}) {
        c.drop_folder = bad;
        INFO(bad);
        CHECK(drop_folder_value(c).empty());
    }
}

TEST_CASE("socketmap answers and virtual(8) map from the store", "[units]") {
    milter_test::installation inst("units-smap");
    auto st = make_state(inst);
    std::string demo = (inst.dir / "drop/demo").string().substr(1) + "/";
    CHECK(socketmap_answer(*st, "domain example.test") == "OK demo");
    CHECK(socketmap_answer(*st, "domain a.b.sub.test") == "OK subs");
    CHECK(socketmap_answer(*st, "domain nope.test") == "NOTFOUND ");
    CHECK(socketmap_answer(*st, "domain ") == "NOTFOUND ");
    CHECK(socketmap_answer(*st, "domain bad..domain") == "NOTFOUND ");
    CHECK(socketmap_answer(*st, "mailbox whoever@example.test") == "OK " + demo);
    CHECK(socketmap_answer(*st, "mailbox @example.test") == "OK " + demo);
    CHECK(socketmap_answer(*st, std::string("mailbox a\0b@example.test", 24)) == "NOTFOUND ");
    CHECK(socketmap_answer(*st, "mailbox " + std::string(5000, 'a')) == "NOTFOUND ");
    CHECK(socketmap_answer(*st, "other x").rfind("PERM", 0) == 0);
    // Sendmail's mailertable (postfix-conf/sendmail.mc): the mxdrop mailer, the folder as host.
    std::string demo_path = "/" + demo.substr(0, demo.size() - 1);
    CHECK(socketmap_answer(*st, "mailertable example.test") == "OK mxdrop:" + demo_path);
    CHECK(socketmap_answer(*st, "mailertable a.b.sub.test").rfind("OK mxdrop:/", 0) == 0);
    CHECK(socketmap_answer(*st, "mailertable .sub.test") == "NOTFOUND ");  // Sendmail's retry
    CHECK(socketmap_answer(*st, "mailertable nope.test") == "NOTFOUND ");

    auto text = st->store->with_view([](store_view& v) { return render_virtual_map(v, 7); });
    // exact domains first, then subdomain patterns; each maps to its drop folder
    auto pos_exact = text.find("/@example\\.test$/ " + demo);
    auto pos_sub = text.find("/\\.sub\\.test$/ ");
    CHECK(pos_exact != std::string::npos);
    CHECK(pos_sub != std::string::npos);
    CHECK(pos_exact < pos_sub);
    CHECK(text.find("/@off\\.test$/") != std::string::npos);  // inactive: queued mail still lands
    CHECK(text.find("generation 7") != std::string::npos);

    // A "." connector goes last.
    {
        auto s = store::open(inst.cfg, false);
        s.write([&](store_tx& tx) {
            connector c;
            c.name = "every";
            c.drop_folder = "/srv/every";
            c.domains = {"."};
            tx.add_connector(c);
        });
    }
    text = st->store->with_view([](store_view& v) { return render_virtual_map(v, 8); });
    CHECK(text.rfind("/@/ srv/every/\n") == text.size() - std::string("/@/ srv/every/\n").size());
    CHECK(socketmap_answer(*st, "domain anything.example") == "OK every");

    // The writer rewrites the file when the generation moves.
    st->tables->refresh(*st->store, true);
    auto k1 = st->tables->known_generation();
    CHECK(k1 > 0);
    CHECK(std::filesystem::exists(st->tables->virtual_map_path()));
}

namespace {
ino_t inode_of(const std::string& path) {
    struct stat sb {};
    REQUIRE(::stat(path.c_str(), &sb) == 0);
    return sb.st_ino;
}
}  // namespace

TEST_CASE("the lmdb: domain table is what Postfix's own postmap reads", "[units]") {
    milter_test::installation inst("units-domtable");
    auto st = make_state(inst);
    {
        auto s = store::open(inst.cfg, false);
        s.write([&](store_tx& tx) {  // the fixture has "subs" for ".sub.test" already
            connector e;
            e.name = "every";
            e.drop_folder = "/srv/every";
            e.domains = {"."};
            tx.add_connector(e);
        });
    }
    auto entries = st->store->with_view([](store_view& v) { return render_domain_table(v); });
    CHECK(entries.count("example.test") == 1);
    CHECK(entries.count(".sub.test") == 1);
    CHECK(entries.count(".") == 0);  // no key can say "every domain": the socketmap does
    CHECK_FALSE(plain_domain("a b.test"));
    CHECK_FALSE(plain_domain("x\n.test"));

    st->tables->refresh(*st->store, true);
    const std::string table = st->tables->domain_table_path();
    auto conf = milter_test::postfix_client_conf(inst.dir);
    auto q = [&](const std::string& key) {
        return milter_test::postmap_query(conf, "lmdb:" + table, key);
    };
    CHECK(q("example.test") == std::optional<std::string>("demo"));
    CHECK(q("EXAMPLE.test") == std::optional<std::string>("demo"));
    CHECK(q(".sub.test") == std::optional<std::string>("subs"));
    CHECK_FALSE(q("unknown.test"));
    CHECK_FALSE(std::filesystem::exists(table + ".lmdb.tmp"));
    CHECK_FALSE(std::filesystem::exists(table + ".lmdb-lock"));

    // A mailbox-only change keeps the file (a replaced table restarts trivial-rewrite) ...
    auto ino = inode_of(table + ".lmdb");
    {
        auto s = store::open(inst.cfg, false);
        s.write([&](store_tx& tx) {
            mailbox m;
            m.address = "new@example.test";
            m.connector = "demo";
            tx.add_mailbox(m);
        });
    }
    st->tables->refresh(*st->store, false);
    CHECK(st->tables->known_generation() ==
          st->store->with_view([](store_view& v) { return v.generation(); }));
    CHECK(inode_of(table + ".lmdb") == ino);
    // ... a domain change replaces it, and Postfix sees the new domain.
    {
        auto s = store::open(inst.cfg, false);
        s.write([&](store_tx& tx) { tx.add_domain("subs", "added.test"); });
    }
    st->tables->refresh(*st->store, false);
    CHECK(inode_of(table + ".lmdb") != ino);
    CHECK(q("added.test") == std::optional<std::string>("subs"));
}

TEST_CASE("table mode: the recipient table answers as the milter, through Postfix's postmap",
          "[units]") {
    milter_test::installation inst("units-rcpttable");
    auto st = make_state(inst);
    st->tables =
        std::make_unique<postfix_tables_writer>("", "", "", (inst.dir / "recipients").string());
    auto p = check_policy::from(inst.cfg);
    st->tables->set_policy(p);
    {
        auto s = store::open(inst.cfg, false);
        s.write([&](store_tx& tx) {
            mailbox m;
            m.connector = "demo";
            m.address = "\"john doe\"@example.test";  // no key Postfix would look up
            tx.add_mailbox(m);
            connector e;
            e.name = "every";
            e.drop_folder = "/srv/every";
            e.domains = {"."};
            tx.add_connector(e);
        });
    }
    auto r = st->store->with_view([&](store_view& v) { return render_recipient_table(v, p); });
    const auto& t = r.table;
    auto at = [&](const std::string& k) {
        auto it = t.find(k);
        return it == t.end() ? std::string("(none)") : it->second;
    };
    CHECK(at("info@example.test") == "DUNNO");
    CHECK(at("postmaster@example.test") == "DUNNO");
    CHECK(at("example.test") == "550 5.1.1 User unknown");
    CHECK(at("catch.test") == "DUNNO");  // catch-all
    CHECK(at("off.test") == "450 4.2.1 Mailbox temporarily unavailable");
    CHECK(at("a@off.test") == "(none)");  // inactive: the domain's 450 answers
    CHECK(at("postmaster@off.test") == "(none)");
    CHECK(at(".sub.test") == "550 5.1.1 User unknown");
    CHECK(at("x.sub.test") == "DUNNO");  // @x.sub.test under .sub.test
    CHECK(at(".") == "(none)");
    REQUIRE(r.unexpressed.size() == 3);  // ".", postmaster@ under .sub.test, the quoted address

    // A custom reject text keeps its words after Postfix's own prefix; another shape cannot.
    p.reject_text = "{address}: Recipient address rejected: no such user here";
    r = st->store->with_view([&](store_view& v) { return render_recipient_table(v, p); });
    CHECK(r.table.at("example.test") == "550 5.1.1 no such user here");
    p.reject_text = "Sorry {address}\r\nX";
    r = st->store->with_view([&](store_view& v) { return render_recipient_table(v, p); });
    CHECK(r.table.at("example.test") == "550 5.1.1 User unknown");

    // Written as Postfix reads it: postmap -q with the keys Postfix's access lookup tries.
    st->tables->refresh(*st->store, true);
    auto conf = milter_test::postfix_client_conf(inst.dir);
    auto q = [&](const std::string& key) {
        return milter_test::postmap_query(conf, "lmdb:" + (inst.dir / "recipients").string(), key);
    };
    CHECK(q("sales@example.test") == std::optional<std::string>("DUNNO"));
    CHECK(q("example.test") == std::optional<std::string>("550 5.1.1 User unknown"));
    CHECK_FALSE(q("nobody@example.test"));
}

TEST_CASE("a domain removed moments ago is tempfailed while Postfix's table catches up",
          "[units]") {
    milter_test::installation inst("units-removed");
    auto st = make_state(inst);
    auto write = [&](auto fn) {
        auto s = store::open(inst.cfg, false);
        s.write(fn);
    };
    write([](store_tx& tx) {
        connector c;
        c.name = "gone";
        c.drop_folder = "/srv/gone";
        c.domains = {"gone.test", ".gsub.test"};
        tx.add_connector(c);
    });
    st->tables->refresh(*st->store, true);
    CHECK(st->decide("<x@gone.test>", false, "", "c").code == "550");  // ours: no such mailbox
    write([](store_tx& tx) { tx.remove_connector("gone", false); });
    st->tables->refresh(*st->store, false);

    auto r = st->decide("<x@gone.test>", false, "", "c");
    CHECK(r.verdict == decision::tempfail);
    CHECK(r.reply() ==
          "451 4.3.0 <x@gone.test>: Recipient address rejected: domain is being reconfigured, "
          "try again later");
    CHECK(r.reason.find("connector gone") != std::string::npos);
    CHECK(st->decide("<x@deep.a.gsub.test>", false, "", "c").code == "451");  // ".gsub.test"
    CHECK(st->decide("<x@never.test>", false, "", "c").verdict == decision::not_ours);
    CHECK(st->decide("<x@gsub.test>", false, "", "c").verdict == decision::not_ours);
    CHECK(st->shm->layout().tempfailed_error_unattributed.load() == 2);
    // A mailbox-only change does not touch the table, so nothing counts as removed ...
    CHECK(st->tables->recently_removed("example.test") == std::nullopt);
    // ... and after the grace period Postfix has the new table: not ours again.
    st->tables->removal_grace = std::chrono::seconds(0);
    CHECK(st->decide("<x@gone.test>", false, "", "c").verdict == decision::not_ours);
}

TEST_CASE("decide(): one decision with counting; SMTPUTF8 per call", "[units]") {
    milter_test::installation inst("units-decide");
    auto st = make_state(inst);
    CHECK(st->decide("<info@example.test>", false, "Q1", "client").verdict == decision::accept);
    CHECK(st->decide("<j\xc3\xb6rg@example.test>", false, "", "c").code == "501");
    CHECK(st->decide("<j\xc3\xb6rg@example.test>", true, "", "c").code == "550");
    CHECK(st->shm->counters("demo").accepted == 1);
    CHECK(st->shm->counters("demo").rejected_unknown == 1);
    // Accepting brought the virtual(8) map up to the store generation.
    CHECK(st->tables->known_generation() == st->shm->generation());
}
