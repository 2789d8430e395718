// Unit tests of doctor's sendmail.cf reader (admin/doctor/sendmail_cf.hpp) on an excerpt of the
// .cf that integration_sendmail generates (fixtures/sendmail.cf), whole and with one thing
// broken at a time: each break is a failure that names it.
#include <catch2/catch.hpp>

#include <string>

#include "doctor/sendmail_cf.hpp"
#include "lib/test_support.hpp"

using namespace mx::admin::doctor::sendmail;

namespace {

std::string fixture() {
    auto t = mx::test::slurp(std::string(DOCTOR_FIXTURES) + "/sendmail.cf");
    REQUIRE(!t.empty());
    return t;
}

expected installed() {
    expected e;
    e.milter = *mx::postfix::parse_libmilter_spec("unix:/run/mx-connector/milter.sock");
    e.milter_spec = "unix:/run/mx-connector/milter.sock";
    e.socketmap = "/run/mx-connector/socketmap.sock";
    return e;
}

std::string replaced(std::string text, const std::string& from, const std::string& to) {
    auto p = text.find(from);
    REQUIRE(p != std::string::npos);
    return text.replace(p, from.size(), to);
}

// The failures of the static checks, one text per failure.
std::vector<std::string> failures(const std::string& text, const expected& e = installed()) {
    std::vector<std::string> out;
    for (const auto& r : check_wiring(parse_cf(text), e).results)
        if (!r.ok) out.push_back(r.message + " | " + r.fix);
    return out;
}

bool one_failure_with(const std::vector<std::string>& f, const std::string& needle) {
    return f.size() == 1 && f[0].find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("sendmail.cf: the generated file parses into our wiring") {
    auto c = parse_cf(fixture());
    CHECK(c.has_input_filters);
    REQUIRE(c.input_filters == std::vector<std::string>{"mx-milter"});
    REQUIRE(c.filters.count("mx-milter"));
    CHECK(c.filters.at("mx-milter").socket == "local:/run/mx-connector/milter.sock");
    CHECK(c.filters.at("mx-milter").flags == "T");
    REQUIRE(c.maps.count("mailertable"));
    CHECK(c.maps.at("mailertable").map_class == "socket");
    CHECK(c.maps.at("mailertable").argument == "local:/run/mx-connector/socketmap.sock");
    REQUIRE(c.maps.count("domain"));
    CHECK(c.maps.at("domain").flags == std::vector<std::string>{"-T<TMPF>"});
    // The mailer's continuation lines are part of it.
    REQUIRE(c.mailers.count("mxdrop"));
    const auto& m = c.mailers.at("mxdrop");
    CHECK(m.program == "/usr/local/lib/mx-connector/sendmail-drop");
    CHECK(m.flags == "lDFMnhu8");
    CHECK(m.user == "mxconnector");
    CHECK(m.argv == "sendmail-drop $h $g $u");
    CHECK(c.mailers.at("smtp").program == "[IPC]");
    REQUIRE(c.rulesets.count("Local_check_rcpt"));
    CHECK(c.rulesets.at("Local_check_rcpt").size() == 7);
}

TEST_CASE("sendmail.cf: the generated file passes every static check") {
    auto w = check_wiring(parse_cf(fixture()), installed());
    for (const auto& r : w.results) CHECK(r.ok);
    CHECK(w.results.size() == 4);  // milter, mailertable, relay, mailer
    CHECK(w.mailertable_ours);
    REQUIRE(w.mx_mailer);
    CHECK(w.mx_mailer->name == "mxdrop");
}

TEST_CASE("sendmail.cf: one thing broken at a time is one failure naming it") {
    const auto cf = fixture();
    SECTION("milter socket line removed") {
        auto f = failures(replaced(cf, "Xmx-milter, S=", "#Xmx-milter, S="));
        CHECK(one_failure_with(f, "no milter (X line) names mx-milter's socket"));
        CHECK(one_failure_with(f, "no X line at all"));
    }
    SECTION("milter on another socket") {
        auto f = failures(
            replaced(cf, "S=local:/run/mx-connector/milter.sock", "S=inet:8890@127.0.0.1"));
        CHECK(one_failure_with(f, "mx-milter S=inet:8890@127.0.0.1"));
    }
    SECTION("no tempfail flag") {
        auto f = failures(replaced(cf, "milter.sock, F=T,", "milter.sock, F=R,"));
        CHECK(one_failure_with(f, "F=R instead of F=T"));
        CHECK(one_failure_with(f, "reject every message"));
        f = failures(replaced(cf, "milter.sock, F=T,", "milter.sock,"));
        CHECK(one_failure_with(f, "accept mail unchecked"));
    }
    SECTION("milter not in InputMailFilters (MAIL_FILTER instead of INPUT_MAIL_FILTER)") {
        auto f = failures(replaced(cf, "O InputMailFilters=mx-milter\n", ""));
        CHECK(one_failure_with(f, "is not in InputMailFilters (not set)"));
    }
    SECTION("mailertable missing or not ours") {
        auto f = failures(replaced(cf, "Kmailertable socket", "#Kmailertable socket"));
        CHECK(one_failure_with(f, "no mailertable map"));
        f = failures(replaced(cf, "Kmailertable socket local:/run/mx-connector/socketmap.sock",
                              "Kmailertable hash /etc/mail/mailertable"));
        CHECK(one_failure_with(f, "mailertable is 'hash /etc/mail/mailertable'"));
    }
    SECTION("relay map or its rule missing") {
        auto f = failures(replaced(cf, "Kdomain socket", "#Kdomain socket"));
        CHECK(one_failure_with(f, "no map 'domain'"));
        f = failures(
            replaced(cf, "SLocal_check_rcpt\nR$*\t\t\t$: $>canonify $1\n", "SLocal_check_rcpt\n"));
        CHECK(f.empty());  // the other rules still ask the map
        std::string no_rules = cf;
        for (std::string::size_type p; (p = no_rules.find("$(domain ")) != std::string::npos;)
            no_rules.replace(p, 9, "$(other ");
        CHECK(one_failure_with(failures(no_rules), "no rule asks the domain map"));
    }
    SECTION("a map on the socketmap with a name mx-milter does not know") {
        auto f = failures(replaced(
            cf, "Kdomain socket",
            "Kdomain socket -T<TMPF> local:/run/mx-connector/socketmap.sock\nKrelay socket"));
        CHECK(one_failure_with(f, "map relay asks mx-milter's socketmap"));
    }
    SECTION("mxdrop mailer missing or wrong") {
        auto f = failures(replaced(cf, "Mmxdrop,", "Mmydrop,"));
        CHECK(one_failure_with(f, "no mailer mxdrop"));
        f = failures(replaced(cf, "F=lDFMnhu8", "F=lDFMmnhu8"));
        CHECK(one_failure_with(f, "F=m"));
        f = failures(replaced(cf, " U=mxconnector,", ""));
        CHECK(one_failure_with(f, "has no U="));
        f = failures(replaced(cf, "A=sendmail-drop $h $g $u", "A=sendmail-drop $u"));
        CHECK(one_failure_with(f, "needs the arguments $h $g $u"));
    }
    SECTION("socketmap disabled in the configuration") {
        auto e = installed();
        e.socketmap.clear();
        auto f = failures(cf, e);
        CHECK(one_failure_with(f, "[milter] socketmap is disabled"));
    }
}

TEST_CASE("sendmail.cf: odd input never throws") {
    for (const char* t : {"", "\n", "X", "M,", "K", "O InputMailFilters", "Xa, S", "\tcontinued",
                          "S\nR", "Mx, A=", "Kx socket -T"}) {
        auto c = parse_cf(t);
        (void)check_wiring(c, installed());
    }
    auto c = parse_cf(
        "O InputMailFilters = a , b\r\nXb, S=unix:/run/x/../mx-connector/milter.sock, F=T\r\n");
    CHECK(c.input_filters == std::vector<std::string>{"a", "b"});
    CHECK(same_socket(c.filters.at("b").socket, installed().milter));
}

TEST_CASE("sendmail: socket specs and mailertable answers") {
    mx::postfix::milter_endpoint inet{false, {}, "127.0.0.1", "8891"};
    CHECK(same_socket("inet:8891@localhost", inet));
    CHECK(same_socket("inet:8891@127.0.0.1", inet));
    CHECK_FALSE(same_socket("inet:8892@127.0.0.1", inet));
    CHECK_FALSE(same_socket("local:/run/mx-connector/milter.sock", inet));
    CHECK(parse_mailertable_answer("OK mxdrop:/srv/drop/demo") ==
          std::make_pair(std::string("mxdrop"), std::string("/srv/drop/demo")));
    CHECK_FALSE(parse_mailertable_answer("NOTFOUND "));
    CHECK_FALSE(parse_mailertable_answer("OK nohost"));
    CHECK_FALSE(parse_mailertable_answer("PERM connector x has no drop folder usable"));
}
