// test_import_pg_fixture: one private PostgreSQL (scripts/pg-private) for the whole test run of the
// cluster import units, started on first use and stopped at exit.
//
// Promises: pg_conninfo() returns a libpq conninfo of a running server, or "" when this machine
// cannot run one (not root, or no postgresql-15): the tests then say so and pass nothing off
// as tested (they WARN and return). fresh_schema() drops and recreates schema mxc.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <pqxx/pqxx>

#include "global/cluster_db.hpp"

namespace mx::test {

inline std::string run_capture(const std::string& cmd) {
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return out;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    return ::pclose(p) == 0 ? out : std::string();
}

inline const std::string& pg_conninfo() {
    static std::string dir, conninfo = [] {
        if (::geteuid() != 0 || !std::filesystem::exists("/usr/lib/postgresql/15/bin/pg_ctl"))
            return std::string();
        char tmpl[] = "/var/tmp/mx-pg-units-XXXXXX";
        if (!::mkdtemp(tmpl)) return std::string();
        dir = tmpl;
        std::string out =
            run_capture(std::string(MX_SOURCE_DIR) + "/scripts/pg-private start " + dir);
        while (!out.empty() && out.back() == '\n') out.pop_back();
        std::string last =
            out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
        std::atexit([] {
            run_capture(std::string(MX_SOURCE_DIR) + "/scripts/pg-private stop " + dir);
            std::error_code ec;
            std::filesystem::remove_all(dir, ec);
        });
        return last;
    }();
    return conninfo;
}

inline cluster::cluster_config pg_config(const std::string& node, int lease = 60) {
    cluster::cluster_config c;
    c.postgresql = pg_conninfo();
    c.node = node;
    c.lease = std::chrono::seconds(lease);
    return c;
}

inline void fresh_schema(pqxx::connection& conn) {
    pqxx::work tx(conn);
    tx.exec0("DROP SCHEMA IF EXISTS mxc CASCADE");
    tx.exec0("CREATE SCHEMA mxc");
    cluster::create_import_schema(tx);
    cluster::create_secret_schema(tx);
    tx.commit();
}

}  // namespace mx::test
