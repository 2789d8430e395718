// Table-driven tests of address parsing and normalisation (global/address.hpp).
#include <catch2/catch.hpp>

#include "global/address.hpp"

using mx::address;
using mx::address_error;
using mx::parse_address;

namespace {
std::string norm(std::string_view in, mx::parse_options o = {}) {
    auto r = parse_address(in, o);
    if (auto* e = std::get_if<address_error>(&r)) return "ERR:" + e->reason;
    return std::get<address>(r).str();
}
}  // namespace

TEST_CASE("addresses normalise to one canonical form", "[address]") {
    struct row {
        const char* in;
        const char* out;
    };
    const row rows[] = {
        {"bob@example.com", "bob@example.com"},
        {"<Bob@Example.COM>", "bob@example.com"},
        {"BOB@EXAMPLE.COM.", "bob@example.com"},
        {"\"bob\"@example.com", "bob@example.com"},  // needless quoting removed
        {"\"john doe\"@example.com", "\"john doe\"@example.com"},
        {"\"a\\\"b\"@example.com", "\"a\\\"b\"@example.com"},
        {"<@relay.example:bob@example.com>", "bob@example.com"},  // source route ignored
        {"bob+tag@example.com", "bob+tag@example.com"},
        {"b.o.b@sub.example.com", "b.o.b@sub.example.com"},
        {"user@bücher.example", "user@xn--bcher-kva.example"},
        {"user@XN--BCHER-KVA.example", "user@xn--bcher-kva.example"},
        {"user@BÜCHER.example", "user@xn--bcher-kva.example"},
        {"jörg@example.com", "jörg@example.com"},
        {"x@[192.0.2.1]", "x@[192.0.2.1]"},
    };
    for (const auto& r : rows) {
        INFO(r.in);
        CHECK(norm(r.in) == r.out);
    }
}

TEST_CASE("malformed addresses are refused with a reason", "[address]") {
    const char* bad[] = {
        "",
        "<>",
        "bob",
        "@example.com",
        "bob@",
        "bob@@example.com",
        "<bob@example.com",
        "bob@example.com>",
        ".bob@example.com",
        "bob.@example.com",
        "b..ob@example.com",
        "bob@-example.com",
        "bob@exa_mple!.com",
        "bob@example..com",
        "\"unterminated@example.com",
        "bob smith@example.com",
        "bob@exam ple.com",
    };
    for (const char* b : bad) {
        INFO(b);
        CHECK(norm(b).rfind("ERR:", 0) == 0);
    }
    CHECK(norm(std::string_view("bo\0b@example.com", 16)).rfind("ERR:", 0) == 0);
    CHECK(norm("bob@example.com\r\n").rfind("ERR:", 0) == 0);
    std::string long_local(65, 'a');
    CHECK(norm(long_local + "@example.com").rfind("ERR:", 0) == 0);
    std::string long_addr = std::string(60, 'a') + "@" + std::string(63, 'b') + "." +
                            std::string(63, 'c') + "." + std::string(63, 'd') + ".com";
    CHECK(norm(long_addr) == "ERR:address longer than 254 octets");
}

TEST_CASE("SMTP form requires brackets and honours SMTPUTF8", "[address]") {
    mx::parse_options smtp{true, false};
    CHECK(norm("bob@example.com", smtp) == "ERR:address must be enclosed in <>");
    CHECK(norm("<bob@example.com>", smtp) == "bob@example.com");
    CHECK(norm("<jörg@example.com>", smtp) == "ERR:non-ASCII address without SMTPUTF8");
    smtp.smtputf8 = true;
    CHECK(norm("<jörg@example.com>", smtp) == "jörg@example.com");
}

TEST_CASE("subaddress and catch-all helpers", "[address]") {
    CHECK(mx::strip_extension("bob+tag", "+") == "bob");
    CHECK(mx::strip_extension("bob+a+b", "+") == "bob");
    CHECK_FALSE(mx::strip_extension("bob", "+"));
    CHECK_FALSE(mx::strip_extension("+tag", "+"));
    CHECK_FALSE(mx::strip_extension("bob+tag", ""));
    CHECK(mx::strip_extension("bob-tag", "-") == "bob");
    CHECK(mx::catch_all_key("example.com") == "@example.com");
}

TEST_CASE("domain patterns", "[address]") {
    CHECK(mx::normalize_domain_pattern(".") == ".");
    CHECK(mx::normalize_domain_pattern(".Example.COM") == ".example.com");
    CHECK(mx::normalize_domain_pattern("Bücher.example") == "xn--bcher-kva.example");
    CHECK_FALSE(mx::normalize_domain_pattern(".."));
    CHECK_FALSE(mx::normalize_domain_pattern("a/b.com"));
    CHECK_FALSE(mx::normalize_domain_pattern("../etc"));
    CHECK_FALSE(mx::normalize_domain_pattern(""));
    CHECK(mx::domain_to_unicode("xn--bcher-kva.example") == "bücher.example");
}

TEST_CASE("normalised addresses never contain path separators in the domain",
          "[address][security]") {
    const char* hostile[] = {"x@../../etc",         "x@a/b", "x@[a/b]",
                             "../../x@example.com", "x@.",   "x@..example"};
    for (const char* h : hostile) {
        auto r = parse_address(h);
        if (auto* a = std::get_if<address>(&r)) {
            INFO(h);
            CHECK(a->domain.find('/') == std::string::npos);
            CHECK(a->domain.find("..") == std::string::npos);
        }
    }
}
