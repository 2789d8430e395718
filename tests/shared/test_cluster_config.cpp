// [cluster] section: single host without it, validation with file and key, redaction
// (global/cluster.hpp).
#include <catch2/catch.hpp>

#include "global/cluster.hpp"

TEST_CASE("no [cluster] section means single host", "[cluster]") {
    auto c = mx::parse_config("hostname = \"mx1.example.com\"\n", "/etc/mx/mx.toml");
    CHECK_FALSE(mx::cluster::cluster_of(c).has_value());
}

TEST_CASE("[cluster] defaults and values", "[cluster]") {
    auto c = mx::parse_config(
        "hostname = \"mx1.example.com\"\nstate_dir = \"/var/lib/mxc\"\n[cluster]\n"
        "postgresql = \"host=/run/pg dbname=mxconnector\"\n",
        "/etc/mx/mx.toml");
    auto cl = mx::cluster::cluster_of(c);
    REQUIRE(cl);
    CHECK(cl->node == "mx1.example.com");
    CHECK(cl->lease == std::chrono::seconds(60));
    CHECK(cl->max_staleness == std::chrono::seconds(0));
    CHECK(cl->key_file == "/var/lib/mxc/cluster.key");

    auto c2 = mx::parse_config(
        "[cluster]\npostgresql = \"postgresql:///mxconnector\"\nnode = \"b\"\n"
        "lease_seconds = 15\nmax_staleness = 300\nkey_file = \"keys/k\"\n",
        "/etc/mx/mx.toml");
    auto cl2 = mx::cluster::cluster_of(c2);
    REQUIRE(cl2);
    CHECK(cl2->node == "b");
    CHECK(cl2->lease == std::chrono::seconds(15));
    CHECK(cl2->max_staleness == std::chrono::seconds(300));
    CHECK(cl2->key_file == "/etc/mx/keys/k");
}

TEST_CASE("[cluster] mistakes name the file and the key", "[cluster]") {
    auto bad = [](const char* body) {
        return mx::cluster::cluster_of(mx::parse_config(body, "/etc/mx/mx.toml"));
    };
    CHECK_THROWS_WITH(bad("[cluster]\nnode = \"a\"\n"),
                      Catch::Contains("/etc/mx/mx.toml: cluster.postgresql"));
    CHECK_THROWS_WITH(bad("[cluster]\npostgresql = \"x\"\nnode = \"../etc\"\n"),
                      Catch::Contains("cluster.node"));
    CHECK_THROWS_WITH(bad("[cluster]\npostgresql = \"x\"\nnode = \"b\"\nlease_seconds = \"1m\"\n"),
                      Catch::Contains("cluster.lease_seconds"));
    CHECK_THROWS_WITH(bad("[cluster]\npostgresql = \"x\"\nnode = \"b\"\nlease_seconds = 1\n"),
                      Catch::Contains("cluster.lease_seconds"));
}

TEST_CASE("passwords never survive redaction", "[cluster]") {
    using mx::cluster::redact_conninfo;
    CHECK(redact_conninfo("host=db password=s3cr3t dbname=m") == "host=db password=*** dbname=m");
    CHECK(redact_conninfo("host=db password = 'a b\\' c' dbname=m") ==
          "host=db password = *** dbname=m");
    CHECK(redact_conninfo("postgresql://mx:s3cr3t@db.example.com/m") ==
          "postgresql://mx:***@db.example.com/m");
    CHECK(redact_conninfo("postgresql://db/m?user=mx&password=s3cr3t&sslmode=require") ==
          "postgresql://db/m?user=mx&password=***&sslmode=require");
    CHECK(redact_conninfo("host=/run/pg dbname=m") == "host=/run/pg dbname=m");
}
