// Drives the real mx-milter binary over its unix socket with the milter wire protocol:
// negotiation, the reply (code + text) for every case of the decision table, store appearing
// late, many concurrent connections, garbage on the socket, live changes through mxctl while
// RCPTs flow, SIGHUP reload, counters, the socketmap service and a clean SIGTERM stop.
#include <catch2/catch.hpp>

#include <sys/socket.h>

#include <atomic>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "fixture.hpp"
#include "global/milter_client.hpp"

using namespace mx::milter_test;
using namespace mx::milter_proto;

namespace {

client session(installation& inst, std::vector<std::string> mail_args = {"<s@sender.test>"}) {
    auto c = client::connect_unix(inst.milter_socket());
    c.negotiate();
    // No reply is expected for CONNECT and MAIL (SMFIP_NR_CONN/NR_MAIL negotiated): a reply
    // sent anyway would be read as the answer to the first RCPT and fail the RCPT checks.
    REQUIRE_FALSE(c.connect("client.test", "192.0.2.1"));
    REQUIRE_FALSE(c.mail(mail_args));
    return c;
}

std::string full(const reply& r) {
    if (r.cmd == 'y') return r.data;
    return r.code();
}

}  // namespace

TEST_CASE("negotiation skips every step the milter does not need", "[protocol]") {
    installation inst("neg");
    inst.start(MX_MILTER_BIN);
    auto c = client::connect_unix(inst.milter_socket());
    auto n = c.negotiate();
    CHECK(n.version == 6);
    CHECK(n.actions == 0x100);  // SMFIF_SETSYMLIST only: never modifies a message
    for (auto f : {p_nohelo, p_nohdrs, p_nobody, p_noeoh, p_nounknown, p_nodata})
        CHECK((n.protocol & f) == f);
    CHECK((n.protocol & p_norcpt) == 0);
    CHECK((n.protocol & p_nomail) == 0);
    // Postfix need not wait for an answer to CONNECT and MAIL: we never refuse there.
    CHECK((n.protocol & p_nr_conn) == p_nr_conn);
    CHECK((n.protocol & p_nr_mail) == p_nr_mail);
    CHECK(inst.stop() == 0);
}

TEST_CASE("an MTA without no-reply support still gets CONNECT and MAIL answers", "[protocol]") {
    // Sendmail before 8.14 / milter protocol 2 style offer: step bits only, no SMFIP_NR_*.
    installation inst("nonr");
    inst.start(MX_MILTER_BIN);
    auto c = client::connect_unix(inst.milter_socket());
    auto n = c.negotiate(0x3ff);
    CHECK((n.protocol & (p_nr_conn | p_nr_mail)) == 0);
    auto conn = c.connect("client.test", "192.0.2.1");
    REQUIRE(conn);
    CHECK(conn->cmd == 'c');
    auto mail = c.mail({"<s@sender.test>"});
    REQUIRE(mail);
    CHECK(mail->cmd == 'c');
    CHECK(c.rcpt("<info@example.test>").cmd == 'c');
    CHECK(c.rcpt("<nobody@example.test>").data.rfind("550 5.1.1", 0) == 0);
    CHECK(inst.stop() == 0);
}

TEST_CASE("RCPT replies and codes for every decision", "[protocol]") {
    installation inst("rcpt");
    inst.start(MX_MILTER_BIN);
    auto c = session(inst);
    struct row {
        const char* arg;
        const char* expected;
    };
    const row rows[] = {
        {"<info@example.test>", "250"},
        {"<INFO+newsletter@Example.TEST>", "250"},  // subaddress, case-insensitive
        {"<postmaster@example.test>", "250"},       // RFC 5321 4.5.1
        {"<anyone@catch.test>", "250"},             // catch-all
        {"<x@x.sub.test>", "250"},                  // ".sub.test" pattern + catch-all
        {"<someone@elsewhere.test>", "250"},        // not ours: Postfix decides
        {"<nobody@example.test>",
         "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown"},
        {"<nobody@y.sub.test>",
         "550 5.1.1 <nobody@y.sub.test>: Recipient address rejected: User unknown"},
        {"<a@off.test>",
         "450 4.2.1 <a@off.test>: Recipient address rejected: Mailbox temporarily unavailable"},
        {"<b@off.test>",
         "450 4.2.1 <b@off.test>: Recipient address rejected: Mailbox temporarily unavailable"},
        {"info@example.test", "501 5.1.3 Bad recipient address syntax"},  // no brackets
        {"<>", "501 5.1.3 Bad recipient address syntax"},
        {"<@example.test>", "501 5.1.3 Bad recipient address syntax"},
        {"<j\xc3\xb6rg@example.test>", "501 5.1.3 Bad recipient address syntax"},  // 8-bit
        // '%' is doubled for smfi_setreply; the MTA sees the single '%'
        {"<a%b@example.test>",
         "550 5.1.1 <a%%b@example.test>: Recipient address rejected: User unknown"},
    };
    for (const auto& r : rows) {
        INFO(r.arg);
        CHECK(full(c.rcpt(r.arg)) == r.expected);
    }
    std::string long_local(300, 'a');
    CHECK(full(c.rcpt("<" + long_local + "@example.test>")) ==
          "501 5.1.3 Bad recipient address syntax");
    c.abort();
    // The same 8-bit address after MAIL FROM ... SMTPUTF8 is a well-formed (unknown) user.
    REQUIRE_FALSE(c.mail({"<s@sender.test>", "SMTPUTF8"}));
    CHECK(full(c.rcpt("<j\xc3\xb6rg@example.test>")) ==
          "550 5.1.1 <j\xc3\xb6rg@example.test>: Recipient address rejected: User unknown");
    c.abort();
    // SMTPUTF8 is per transaction: the next MAIL without it refuses 8-bit again.
    REQUIRE_FALSE(c.mail({"<s@sender.test>"}));
    CHECK(full(c.rcpt("<j\xc3\xb6rg@example.test>")).substr(0, 9) == "501 5.1.3");
    c.quit();

    // Counters in shared memory (what `mxctl stats` shows).
    auto shm = mx::shm_state::attach_existing(inst.cfg);
    REQUIRE(shm);
    CHECK(shm->counters("demo").accepted.load() == 3);
    CHECK(shm->counters("demo").rejected_unknown.load() == 3);
    CHECK(shm->counters("off").tempfailed_inactive.load() == 2);
    CHECK(shm->counters("catch").accepted.load() == 1);
    CHECK(shm->layout().not_ours.load() == 1);
    CHECK(shm->layout().rejected_syntax.load() == 6);
    CHECK(inst.stop() == 0);
}

TEST_CASE("policy options: hidden existence, rejected unknown domains, postmaster off",
          "[protocol]") {
    installation inst("policy",
                      "hide_existence = true\nunknown_domain = \"reject\"\n"
                      "accept_postmaster = false\n");
    inst.start(MX_MILTER_BIN);
    auto c = session(inst);
    CHECK(full(c.rcpt("<nobody@example.test>")) == "550 5.1.1 Recipient address rejected");
    CHECK(full(c.rcpt("<postmaster@example.test>")) == "550 5.1.1 Recipient address rejected");
    CHECK(full(c.rcpt("<x@elsewhere.test>")) == "550 5.1.2 Recipient address rejected");
    CHECK(full(c.rcpt("<info@example.test>")) == "250");
}

TEST_CASE("no store yet: 451 4.3.0 for every well-formed RCPT, then normal once it exists",
          "[protocol]") {
    installation inst("nostore", "", false);
    inst.start(MX_MILTER_BIN);
    auto c = session(inst);
    CHECK(full(c.rcpt("<info@example.test>")) ==
          "451 4.3.0 <info@example.test>: Temporary lookup failure");
    CHECK(full(c.rcpt("<x@elsewhere.test>")) ==
          "451 4.3.0 <x@elsewhere.test>: Temporary lookup failure");
    CHECK(full(c.rcpt("bad")) == "501 5.1.3 Bad recipient address syntax");
    inst.populate();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // > retry interval
    CHECK(full(c.rcpt("<info@example.test>")) == "250");
    CHECK(full(c.rcpt("<nobody@example.test>")).substr(0, 9) == "550 5.1.1");
}

TEST_CASE("64 concurrent connections get exactly the right answers", "[protocol]") {
    installation inst("conc");
    inst.start(MX_MILTER_BIN);
    std::atomic<int> wrong{0}, done{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 64; ++t) {
        threads.emplace_back([&, t] {
            try {
                auto c = client::connect_unix(inst.milter_socket());
                c.negotiate();
                c.connect("c" + std::to_string(t), "192.0.2.7");
                c.mail({"<s@sender.test>"});
                for (int i = 0; i < 100; ++i) {
                    bool known = (i + t) % 2 == 0;
                    auto r = c.rcpt(known ? "<sales@example.test>"
                                          : "<u" + std::to_string(i) + "@example.test>");
                    if (known ? r.cmd != 'c' : r.data.rfind("550 5.1.1", 0) != 0) ++wrong;
                    ++done;
                }
                c.quit();
            } catch (...) {
                ++wrong;
            }
        });
    }
    for (auto& th : threads) th.join();
    CHECK(wrong.load() == 0);
    CHECK(done.load() == 6400);
    auto shm = mx::shm_state::attach_existing(inst.cfg);
    REQUIRE(shm);
    CHECK(shm->counters("demo").accepted.load() + shm->counters("demo").rejected_unknown.load() ==
          6400);
}

TEST_CASE("garbage on the milter socket never takes the daemon down", "[protocol][hostile]") {
    installation inst("garbage");
    inst.start(MX_MILTER_BIN);
    std::mt19937 rng(42);
    auto attempt = [&](const std::string& bytes) {
        try {
            auto c = client::connect_unix(inst.milter_socket(), 2000);
            c.send_raw(bytes);
            try {
                (void)c.read_reply();
            } catch (...) {
            }
        } catch (...) {
        }
    };
    attempt(std::string("\xff\xff\xff\xff", 4) + "O");    // absurd length
    attempt(std::string("\x00\x00\x00\x00", 4));          // zero length
    attempt(std::string("\x00\x00\x00\x10", 4) + "R<a");  // truncated packet, then close
    attempt(std::string("\x00\x00\x00\x01", 4) + "Z");    // unknown command
    attempt(std::string("\x00\x00\x00\x02", 4) + "R");    // RCPT before negotiation
    for (int i = 0; i < 50; ++i) {
        std::string junk(1 + rng() % 600, '\0');
        for (auto& ch : junk) ch = static_cast<char>(rng());
        attempt(junk);
    }
    {
        // RCPT with no argument at all, and a macro packet with odd contents.
        auto c = client::connect_unix(inst.milter_socket());
        c.negotiate();
        c.connect("h", "192.0.2.1");
        c.mail({"<s@x>"});
        c.send_packet('D', std::string("R\0\0\0", 4));
        c.send_packet('R', "");
        try {
            auto r = c.read_reply();  // libmilter may also just drop such a session
            CHECK((r.cmd == 't' || r.cmd == 'y' || r.cmd == 'r'));
        } catch (const std::runtime_error&) {
        }
    }
    REQUIRE(inst.alive());
    auto c = session(inst);
    CHECK(full(c.rcpt("<info@example.test>")) == "250");
    CHECK(full(c.rcpt("<nobody@example.test>")).substr(0, 9) == "550 5.1.1");
}

TEST_CASE("live changes through mxctl while RCPTs flow: never a wrong decision", "[protocol]") {
    installation inst("live");
    inst.start(MX_MILTER_BIN);
    std::atomic<bool> stop{false};
    std::atomic<int> changes{0}, mxctl_errors{0};
    std::string mxctl = std::string(MX_MXCTL_BIN) + " --config " + inst.conf.string();
    std::thread changer([&] {
        for (int i = 0; i < 40 && !stop; ++i) {
            const char* cmd = i % 2 == 0 ? " mailbox add toggle@example.test --connector demo"
                                         : " mailbox remove toggle@example.test";
            if (std::system((mxctl + cmd + " >/dev/null 2>&1").c_str()) != 0) ++mxctl_errors;
            ++changes;
        }
        stop = true;
    });
    int wrong = 0, toggled_accept = 0, toggled_reject = 0, total = 0;
    auto c = session(inst);
    while (!stop) {
        auto a = c.rcpt("<info@example.test>");
        auto b = c.rcpt("<nobody@example.test>");
        auto t = c.rcpt("<toggle@example.test>");
        if (a.cmd != 'c') ++wrong;
        if (b.data.rfind("550 5.1.1", 0) != 0) ++wrong;
        if (t.cmd == 'c')
            ++toggled_accept;
        else if (t.data.rfind("550 5.1.1", 0) == 0)
            ++toggled_reject;
        else
            ++wrong;  // e.g. a 451 while the table changes
        total += 3;
    }
    changer.join();
    CHECK(mxctl_errors.load() == 0);
    CHECK(changes.load() == 40);
    CHECK(wrong == 0);
    CHECK(total > 40);
    CHECK(toggled_accept > 0);  // the change really became visible without restart
    CHECK(toggled_reject > 0);
    // After the loop (40 changes: last one removes it) the mailbox is gone.
    CHECK(full(c.rcpt("<toggle@example.test>")).substr(0, 9) == "550 5.1.1");
}

TEST_CASE("SIGHUP reloads the policy without dropping connections", "[protocol]") {
    installation inst("hup");
    inst.start(MX_MILTER_BIN);
    auto c = session(inst);
    CHECK(full(c.rcpt("<nobody@example.test>")) ==
          "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown");
    inst.write_config("reject_text = \"{address}: no such mailbox here\"\n");
    ::kill(inst.pid, SIGHUP);
    ::kill(inst.pid, SIGHUP);  // twice in a row must not stop it
    std::string got;
    for (int i = 0; i < 100; ++i) {
        got = full(c.rcpt("<nobody@example.test>"));
        if (got.find("no such mailbox") != std::string::npos) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(got == "550 5.1.1 <nobody@example.test>: no such mailbox here");
    CHECK(inst.alive());
    CHECK(inst.stop() == 0);
    CHECK_FALSE(std::filesystem::exists(inst.milter_socket()));
}

TEST_CASE("socketmap on a loopback TCP port answers Postfix's own client", "[socketmap]") {
    installation inst("smap-inet");
    inst.socketmap_spec = "inet:10031@127.0.0.1";
    inst.write_config("");
    inst.start(MX_MILTER_BIN);
    auto conf = postfix_client_conf(inst.dir);
    auto q = [&](const std::string& key) {
        return postmap_query(conf, "socketmap:inet:127.0.0.1:10031:domain", key);
    };
    for (int i = 0; i < 100 && !q("example.test"); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(q("example.test") == std::optional<std::string>("demo"));
    CHECK_FALSE(q("elsewhere.test"));
    CHECK(inst.stop() == 0);
}

TEST_CASE("socketmap refuses a TCP address beyond loopback", "[socketmap]") {
    installation inst("smap-public");
    inst.socketmap_spec = "inet:10032@0.0.0.0";
    inst.write_config("");
    try {
        inst.start(MX_MILTER_BIN);  // may return once the milter socket exists
    } catch (const std::runtime_error&) {
    }
    for (int i = 0; i < 200 && inst.alive(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
    CHECK_FALSE(inst.alive());  // refuses to run at all
    std::ifstream log(inst.dir / "mx-milter.log");
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    CHECK(text.find("not a loopback address") != std::string::npos);
}

TEST_CASE("socketmap service answers Postfix lookups and survives garbage", "[socketmap]") {
    installation inst("smap");
    inst.start(MX_MILTER_BIN);
    auto q = [&](std::string_view r) { return socketmap_query(inst.socketmap_socket(), r); };
    CHECK(q("domain example.test") == "OK demo");
    CHECK(q("domain EXAMPLE.test") == "OK demo");
    CHECK(q("domain y.sub.test") == "OK subs");
    CHECK(q("domain sub.test") == "NOTFOUND ");  // ".sub.test" covers subdomains only
    CHECK(q("domain elsewhere.test") == "NOTFOUND ");
    CHECK(q("domain .example.test") == "NOTFOUND ");
    std::string drop = (inst.dir / "drop/demo").string().substr(1) + "/";
    // every address of a served domain (the milter already refused unknown users)
    CHECK(q("mailbox info@example.test") == "OK " + drop);
    CHECK(q("mailbox unknown+x@example.test") == "OK " + drop);
    CHECK(q("mailbox a@off.test").rfind("OK ", 0) == 0);
    CHECK(q("mailbox a@elsewhere.test") == "NOTFOUND ");
    CHECK(q("mailbox no-at-sign") == "NOTFOUND ");
    CHECK(q("connector x@catch.test") == "OK catch");
    CHECK(q("nosuchmap key").rfind("PERM ", 0) == 0);
    CHECK(q("nospace").rfind("PERM ", 0) == 0);
    // Framing garbage: PERM, then the connection is closed; the service lives on.
    for (std::string bad : {std::string("abc"), std::string("99999999:x,"), std::string("5:abcdeX"),
                            std::string(":,")}) {
        auto fd_client = client::connect_unix(inst.socketmap_socket(), 2000);
        fd_client.send_raw(bad);
        char buf[256];
        ssize_t n = ::recv(fd_client.fd(), buf, sizeof buf, 0);
        std::string got(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
        INFO(bad);
        CHECK(got.find("PERM") != std::string::npos);
    }
    CHECK(q("domain example.test") == "OK demo");
    CHECK(inst.alive());
}
