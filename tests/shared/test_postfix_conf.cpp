// Postfix configuration syntax and our wiring plan (global/postfix_conf.hpp): strings in,
// strings out — no Postfix, no root.
#include <catch2/catch.hpp>

#include "global/postfix_conf.hpp"

using namespace mx::postfix;

namespace {

mx::config stock_config() {
    return mx::parse_config("user = \"mxconnector\"\n", "/etc/mx-connector/mx-connector.toml");
}

std::string value_of(const wiring& w, const std::string& key) {
    for (const auto& [k, v] : w.main)
        if (k == key) return v;
    return "<unset>";
}

}  // namespace

TEST_CASE("Postfix lists split on commas and blanks, braces stay whole", "[postfix_conf]") {
    CHECK(split_list("a, b c,,d\n  e") == std::vector<std::string>{"a", "b", "c", "d", "e"});
    CHECK(split_list("").empty());
    CHECK(split_list("unix:/x, { inet:h:1, default_action = accept }") ==
          std::vector<std::string>{"unix:/x", "{ inet:h:1, default_action = accept }"});
    CHECK(split_list("{ unbalanced") == std::vector<std::string>{"{ unbalanced"});
}

TEST_CASE("table specs", "[postfix_conf]") {
    auto t = parse_table("socketmap:unix:/run/s.sock:domain");
    REQUIRE(t);
    CHECK(t->type == "socketmap");
    CHECK(t->name == "unix:/run/s.sock:domain");
    CHECK(parse_table("lmdb:/run/x")->type == "lmdb");
    CHECK_FALSE(parse_table("example.com"));
    CHECK_FALSE(parse_table("/etc/postfix/domains"));
    CHECK_FALSE(parse_table("$myhostname"));
    CHECK_FALSE(parse_table(":x"));
}

TEST_CASE("libmilter specs and Postfix milter entries", "[postfix_conf]") {
    auto u = parse_libmilter_spec("unix:/run/mx/milter.sock");
    REQUIRE(u);
    CHECK(u->is_unix);
    CHECK(u->path == "/run/mx/milter.sock");
    auto i = parse_libmilter_spec("inet:8891@[127.0.0.1]");
    REQUIRE(i);
    CHECK((i->host == "127.0.0.1" && i->port == "8891"));
    CHECK(parse_libmilter_spec("inet:8891")->host == "127.0.0.1");
    CHECK_FALSE(parse_libmilter_spec("tcp:8891"));

    auto e = parse_milter_entry("{ unix:/run/m.sock, default_action = accept }");
    CHECK(e.address == "unix:/run/m.sock");
    CHECK(e.default_action == "accept");
    CHECK(parse_milter_entry(" inet:localhost:8891 ").address == "inet:localhost:8891");
    CHECK(parse_milter_entry("{").address.empty());
}

TEST_CASE("endpoint comparison: relative, chrooted, loopback names", "[postfix_conf]") {
    auto ours = *parse_libmilter_spec("unix:/var/spool/postfix/mx/milter.sock");
    CHECK(same_endpoint("unix:mx/milter.sock", ours, "/var/spool/postfix", false));
    CHECK(same_endpoint("unix:/mx/milter.sock", ours, "/var/spool/postfix", true));
    CHECK_FALSE(same_endpoint("unix:/mx/milter.sock", ours, "/var/spool/postfix", false));
    CHECK(same_endpoint("/var/spool/postfix/mx/./milter.sock", ours, "/q", false));
    CHECK_FALSE(same_endpoint("inet:127.0.0.1:8891", ours, "/q", false));
    CHECK(postfix_address(ours, "/var/spool/postfix") == "unix:mx/milter.sock");
    CHECK(inside_queue_dir("/var/spool/postfix/mx/milter.sock", "/var/spool/postfix/"));
    CHECK_FALSE(inside_queue_dir("/var/spool/postfix2/m.sock", "/var/spool/postfix"));

    auto inet = *parse_libmilter_spec("inet:8891@127.0.0.1");
    CHECK(same_endpoint("inet:localhost:8891", inet, "/q", false));
    CHECK(same_endpoint("inet:[::1]:8891", inet, "/q", false));
    CHECK_FALSE(same_endpoint("inet:127.0.0.1:8892", inet, "/q", false));
    CHECK_FALSE(same_endpoint("inet:nonsense", inet, "/q", false));
    CHECK(postfix_address(inet, "/q") == "inet:127.0.0.1:8891");
}

TEST_CASE("master.cf services, overrides and listen addresses", "[postfix_conf]") {
    auto v = parse_master(
        "smtp       inet  n       -       y       -       -       smtpd\n"
        "127.0.0.1:2525 inet n -       n       -       -       smtpd -o syslog_name=x\n"
        "virtual    unix  -       n       n       -       -       virtual -o { "
        "virtual_mailbox_maps = lmdb:/run/v, regexp:/run/v.regexp }\n"
        "broken line\n");
    REQUIRE(v.size() == 3);
    CHECK(v[0].id() == "smtp/inet");
    CHECK(v[0].chrooted());
    CHECK_FALSE(v[1].chrooted());
    CHECK(service_override(v[1], "syslog_name") == "x");
    CHECK(service_override(v[2], "virtual_mailbox_maps") == "lmdb:/run/v, regexp:/run/v.regexp");
    CHECK_FALSE(service_override(v[0], "virtual_mailbox_maps"));
    CHECK(smtpd_listen(v[0], "all") == std::make_pair(std::string("127.0.0.1"), std::string("25")));
    CHECK(smtpd_listen(v[0], "192.0.2.1, 127.0.0.1")->first == "192.0.2.1");
    CHECK(smtpd_listen(v[1], "all") ==
          std::make_pair(std::string("127.0.0.1"), std::string("2525")));
    CHECK_FALSE(smtpd_listen(v[2], "all"));
}

TEST_CASE("mx-milter's table paths follow its config keys", "[postfix_conf]") {
    auto t = milter_tables_of(stock_config());
    CHECK(t.socketmap == "/run/mx-connector/socketmap.sock");
    CHECK(t.domain_table == "/run/mx-connector/domains");
    CHECK(t.drop_table == "/run/mx-connector/virtual_mailbox");
    CHECK(t.virtual_map == "/run/mx-connector/virtual_mailbox.regexp");
    auto c = mx::parse_config("[milter]\nsocketmap = \"\"\ndomain_table = \"tables/d\"\n",
                              "/etc/mx/mx.toml");
    auto t2 = milter_tables_of(c);
    CHECK(t2.socketmap.empty());
    CHECK(t2.domain_table == "/etc/mx/tables/d");
    CHECK_THROWS_AS(mx::parse_config("[milter]\ndomain_table = 3\n", "/etc/mx/mx.toml"),
                    mx::config_error);
}

TEST_CASE("list edits keep other entries and never repeat ours", "[postfix_conf]") {
    CHECK(list_with("", "a") == "a");
    CHECK(list_with("x, a", "a") == "x, a");
    CHECK(list_with("x y", "a") == "x y, a");
    CHECK(list_without("x, a, y", "a") == "x, y");
    CHECK(list_without("a", "a").empty());
}

TEST_CASE("wiring plan on a stock Debian main.cf", "[postfix_conf]") {
    current_main now;  // Debian sets smtpd_relay_restrictions, nothing of ours
    now.smtpd_relay_restrictions =
        "permit_mynetworks permit_sasl_authenticated defer_unauth_destination";
    auto w = plan_wiring(stock_config(), now, 998, 997);
    CHECK(value_of(w, "virtual_mailbox_domains") ==
          "lmdb:/run/mx-connector/domains, socketmap:unix:/run/mx-connector/socketmap.sock:domain");
    CHECK(value_of(w, "virtual_mailbox_maps").empty());
    CHECK(value_of(w, "smtpd_milters") == "unix:/run/mx-connector/milter.sock");
    CHECK(value_of(w, "milter_default_action") == "tempfail");
    CHECK(value_of(w, "virtual_uid_maps") == "static:998");
    CHECK(value_of(w, "virtual_gid_maps") == "static:997");
    CHECK(value_of(w, "virtual_minimum_uid") == "998");
    // Debian's relay rule already protects: not repeated, not replaced.
    CHECK(value_of(w, "smtpd_relay_restrictions") == "<unset>");
    CHECK(w.virtual_maps ==
          "lmdb:/run/mx-connector/virtual_mailbox,regexp:/run/mx-connector/virtual_mailbox.regexp");
    // Each key once.
    for (std::size_t i = 0; i < w.main.size(); ++i)
        for (std::size_t j = i + 1; j < w.main.size(); ++j)
            CHECK(w.main[i].first != w.main[j].first);
}

TEST_CASE("wiring plan merges into an existing configuration", "[postfix_conf]") {
    current_main now;
    now.smtpd_milters = "inet:localhost:8891";  // e.g. OpenDKIM
    now.virtual_mailbox_domains = "other.example";
    now.non_smtpd_milters = "unix:/run/mx-connector/milter.sock, inet:localhost:8891";
    now.smtpd_relay_restrictions = "permit_mynetworks";
    auto w = plan_wiring(stock_config(), now, 1, 1);
    CHECK(value_of(w, "smtpd_milters") ==
          "inet:localhost:8891, unix:/run/mx-connector/milter.sock");
    CHECK(value_of(w, "virtual_mailbox_domains").rfind("other.example, lmdb:", 0) == 0);
    CHECK(value_of(w, "non_smtpd_milters") == "inet:localhost:8891");
    CHECK(value_of(w, "smtpd_relay_restrictions") ==
          "permit_mynetworks, reject_unauth_destination");

    // Applied once, planned again: the same values (idempotent).
    current_main after = now;
    after.smtpd_milters = value_of(w, "smtpd_milters");
    after.virtual_mailbox_domains = value_of(w, "virtual_mailbox_domains");
    after.non_smtpd_milters = value_of(w, "non_smtpd_milters");
    after.smtpd_relay_restrictions = value_of(w, "smtpd_relay_restrictions");
    auto again = plan_wiring(stock_config(), after, 1, 1);
    CHECK(again.main.size() == w.main.size() - 2);  // nothing left to fix in those two
    CHECK(value_of(again, "smtpd_milters") == value_of(w, "smtpd_milters"));
    CHECK(value_of(again, "virtual_mailbox_domains") == value_of(w, "virtual_mailbox_domains"));

    current_main conflict;
    conflict.virtual_mailbox_maps = "hash:/etc/postfix/vmailbox";
    CHECK_THROWS_AS(plan_wiring(stock_config(), conflict, 1, 1), std::invalid_argument);
}

TEST_CASE("wiring plan in table mode: no milter, the access check appended", "[postfix_conf]") {
    auto cfg = mx::parse_config(
        "user = \"mxconnector\"\n[milter]\nrecipient_table = \"/run/mx-connector/recipients\"\n",
        "/etc/mx-connector/mx-connector.toml");
    CHECK(milter_tables_of(cfg).recipient_table == "/run/mx-connector/recipients");
    CHECK(milter_tables_of(stock_config()).recipient_table.empty());  // off unless set
    current_main now;  // switching an installation wired for the milter, with OpenDKIM
    now.smtpd_milters = "inet:localhost:8891, unix:/run/mx-connector/milter.sock";
    now.smtpd_recipient_restrictions = "permit_mynetworks, reject_rbl_client zen.example";
    auto w = plan_wiring(cfg, now, 1, 1);
    CHECK(value_of(w, "smtpd_milters") == "inet:localhost:8891");
    CHECK(value_of(w, "smtpd_recipient_restrictions") ==
          "permit_mynetworks, reject_rbl_client zen.example, "
          "check_recipient_access lmdb:/run/mx-connector/recipients");
    CHECK(value_of(w, "recipient_delimiter") == "+");
    CHECK(value_of(w, "parent_domain_matches_subdomains") ==
          "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,"
          "qmqpd_authorized_clients,relay_domains");
    CHECK(value_of(w, "milter_default_action") == "<unset>");
    CHECK(value_of(w, "virtual_mailbox_maps").empty());  // delivery wiring as in milter mode

    // Planned again after applying: the entry is not repeated.
    now.smtpd_recipient_restrictions = value_of(w, "smtpd_recipient_restrictions");
    auto again = plan_wiring(cfg, now, 1, 1);
    CHECK(value_of(again, "smtpd_recipient_restrictions") ==
          value_of(w, "smtpd_recipient_restrictions"));
    // --remove takes out exactly the two words of our entry.
    CHECK(restrictions_without(value_of(w, "smtpd_recipient_restrictions"),
                               recipient_access_entry(milter_tables_of(cfg))) ==
          "permit_mynetworks, reject_rbl_client zen.example");
    CHECK(restrictions_without("check_recipient_access lmdb:/other",
                               "check_recipient_access "
                               "lmdb:/run/x") == "check_recipient_access lmdb:/other");
}
