// config_reader: typed keys with defaults and ranges; errors name the file, section and key.
#include <catch2/catch.hpp>

#include "global/config.hpp"
#include "global/config_reader.hpp"

namespace {

mx::config_reader section(const char* toml, const char* name = "importer") {
    return mx::config_reader(mx::parse_config(toml, "/etc/mx/mx.toml"), name);
}

}  // namespace

TEST_CASE("missing keys give their defaults", "[config_reader]") {
    auto r = section("[importer]\n");
    CHECK_FALSE(r.has("batch_size"));
    CHECK(r.integer("batch_size", 256, 1, 1000) == 256);
    CHECK(r.number("max_age_days", 5, 0, 10) == 5);
    CHECK(r.boolean("enabled", true));
    CHECK(r.string("name", "x") == "x");
    CHECK(r.word("durability", "syncfs", {"syncfs", "fsync"}) == "syncfs");
    CHECK(r.path("template_file", "/d/t") == "/d/t");
    // An absent section reads like an empty one.
    CHECK(section("", "nothing").integer("k", 7) == 7);
}

TEST_CASE("present keys are read typed; paths resolve against the file", "[config_reader]") {
    auto r = section(
        "[importer]\nbatch_size = 8\nmax_age_days = 0.5\nretry = 3\nenabled = false\n"
        "name = \"n\"\ndurability = \"fsync\"\ntemplate_file = \"t/b.txt\"\nempty = \"\"\n");
    CHECK(r.integer("batch_size", 256, 1, 1000) == 8);
    CHECK(r.number("max_age_days", 5, 0, 10) == 0.5);
    CHECK(r.number("retry", 1) == 3);  // an integer is a number too
    CHECK_FALSE(r.boolean("enabled", true));
    CHECK(r.string("name", "x") == "n");
    CHECK(r.word("durability", "syncfs", {"syncfs", "fsync"}) == "fsync");
    CHECK(r.path("template_file", {}) == "/etc/mx/t/b.txt");
    CHECK(r.path("empty", "/default").empty());  // "" is the admin's choice: disabled
}

TEST_CASE("a wrong type names the file and the key", "[config_reader]") {
    auto r = section(
        "[importer]\nbatch_size = \"8\"\nhalf = 2.5\nflag = 1\nname = 3\nmax_age_days = \"x\"\n");
    CHECK_THROWS_WITH(r.integer("batch_size", 1),
                      Catch::Contains("/etc/mx/mx.toml: importer.batch_size: wrong type"));
    CHECK_THROWS_WITH(r.integer("half", 1), Catch::Contains("importer.half: wrong type"));
    CHECK_THROWS_WITH(r.boolean("flag", true), Catch::Contains("importer.flag: wrong type"));
    CHECK_THROWS_WITH(r.string("name", ""), Catch::Contains("importer.name: wrong type"));
    CHECK_THROWS_WITH(r.path("name", {}), Catch::Contains("importer.name: wrong type"));
    CHECK_THROWS_WITH(r.number("max_age_days", 5),
                      Catch::Contains("importer.max_age_days: wrong type"));
    CHECK_THROWS_AS(r.integer("batch_size", 1), mx::config_error);
}

TEST_CASE("out of range and unknown words are errors, never clamped", "[config_reader]") {
    auto r = section("[importer]\nbatch_size = 0\nworkers = 17\ndays = -1.5\nmode = \"sync\"\n");
    CHECK_THROWS_WITH(r.integer("batch_size", 256, 1, 1000),
                      Catch::Contains("importer.batch_size: must be 1..1000, got 0"));
    CHECK_THROWS_WITH(r.integer("workers", 2, 1, 16), Catch::Contains("must be 1..16, got 17"));
    CHECK_THROWS_WITH(r.integer("workers", 2, 20), Catch::Contains("must be at least 20"));
    CHECK_THROWS_WITH(r.number("days", 30, 0),
                      Catch::Contains("importer.days: must be at least 0"));
    CHECK_THROWS_WITH(r.word("mode", "syncfs", {"syncfs", "fsync"}),
                      Catch::Contains("importer.mode: must be one of \"syncfs\", \"fsync\""));
    // The bounds themselves are allowed.
    CHECK(r.integer("workers", 2, 1, 17) == 17);
}

TEST_CASE("unknown keys are ignored; the top level and tables without a file", "[config_reader]") {
    auto c =
        mx::parse_config("no_such_key = 1\n[importer]\nno_such_key = \"x\"\n", "/etc/mx/mx.toml");
    CHECK(c.state_dir == "/var/lib/mx-connector");  // parse_config does not object
    mx::config_reader top(c, "");
    CHECK(top.where("user") == "/etc/mx/mx.toml: user");
    mx::config_reader t(nlohmann::json{{"exec_concurrency", 0}}, "targets");
    CHECK_THROWS_WITH(t.integer("exec_concurrency", 4, 1, 1024),
                      Catch::StartsWith("config: targets.exec_concurrency: must be 1..1024"));
    mx::config_reader not_a_table(nlohmann::json(5), "targets");
    CHECK(not_a_table.integer("exec_concurrency", 4) == 4);
}

TEST_CASE("section readers reject what they used to accept silently", "[config_reader]") {
    // [milter]: tables in one struct, defaults in run_dir, "" disables.
    auto c = mx::parse_config("run_dir = \"/r\"\n[milter]\nvirtual_map = \"\"\n", "/e/mx.toml");
    CHECK(c.milter.socketmap == "unix:/r/socketmap.sock");
    CHECK(c.milter.domain_table == "/r/domains");
    CHECK(c.milter.drop_table == "/r/virtual_mailbox");
    CHECK(c.milter.virtual_map.empty());
    CHECK_THROWS_WITH(mx::parse_config("[milter]\nsocketmap = 1\n", "/e/mx.toml"),
                      Catch::Contains("/e/mx.toml: milter.socketmap: wrong type"));
    CHECK_THROWS_WITH(mx::parse_config("[milter]\nsocket_mode = \"rw\"\n", "/e/mx.toml"),
                      Catch::Contains("milter.socket_mode"));
    CHECK(mx::parse_config("[milter]\nsocket_mode = \"0640\"\n", "/e/mx.toml").milter.socket_mode ==
          0640);
    CHECK(mx::parse_config("[milter]\nsocket_mode = 416\n", "/e/mx.toml").milter.socket_mode ==
          0640);
    CHECK_THROWS_WITH(mx::parse_config("log_level = \"loud\"\n", "/e/mx.toml"),
                      Catch::Contains("/e/mx.toml: log_level"));
}
