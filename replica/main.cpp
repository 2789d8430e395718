// mx-replica: follows the cluster catalog in PostgreSQL into this host's LMDB store (see
// replica.hpp and docs/cluster.md).
#include <unistd.h>

#include <iostream>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "global/cluster_db.hpp"
#include "global/logging.hpp"
#include "replica.hpp"
#include "util/privdrop.hpp"

int main(int argc, char** argv) {
    CLI::App app{"mx-replica - keeps this host's store equal to the cluster catalog"};
    std::string config_path;
    bool once = false;
    app.add_option("--config", config_path,
                   "configuration file (default: $MX_CONFIG or "
                   "/etc/mx-connector/mx-connector.toml)");
    app.add_flag("--once", once, "synchronise once and exit (non-zero when PostgreSQL fails)");
    CLI11_PARSE(app, argc, argv);
    try {
        auto cfg = mx::load_config(mx::resolve_config_path(config_path));
        mx::setup_logging(cfg, "mx-replica");
        auto c = mx::cluster::cluster_of(cfg);
        if (!c) {
            std::cerr << "mx-replica: " << cfg.file.string()
                      << " has no [cluster] section: nothing to follow (single host)\n";
            return 2;
        }
        if (cfg.user && ::geteuid() == 0) {
            auto acct = mx::util::lookup_account(*cfg.user);
            if (!acct) throw std::runtime_error("user '" + *cfg.user + "' does not exist");
            mx::util::drop_privileges(*acct);
        }
        mx::replica::follower f(cfg, *c);
        if (once) return f.run_once();
        return f.run();
    } catch (const std::exception& e) {
        spdlog::error("mx-replica: {}", mx::log_safe(e.what()));
        std::cerr << "mx-replica: " << e.what() << "\n";
        return 1;
    }
}
