// Test helpers of tests/console: a temporary folder, a config in it, an ops::env over it.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <optional>
#include <string>

#include "console.hpp"

namespace console_test {

namespace fs = std::filesystem;

struct temp_dir {
    fs::path path;
    temp_dir() {
        char tmpl[] = "/tmp/mx-console-unit-XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

inline mx::config cfg_with(const temp_dir& t, const std::string& console_section) {
    return mx::parse_config("state_dir = \"" + (t.path / "state").string() + "\"\nrun_dir = \"" +
                                (t.path / "run").string() + "\"\n" + console_section,
                            t.path / "c.toml");
}

struct test_env : mx::ops::env {
    mx::config c;
    std::optional<mx::store> s;
    std::optional<mx::secret_store> sec;
    explicit test_env(mx::config cfg) : c(std::move(cfg)) {}
    const mx::config& cfg() override { return c; }
    mx::store& open_store() override {
        if (!s) s = mx::store::open(c, false);
        return *s;
    }
    mx::store& open_store_read_only() override { return open_store(); }
    mx::secret_store& secrets() override {
        if (!sec) sec = mx::secret_store::open(c, false);
        return *sec;
    }
};

}  // namespace console_test
