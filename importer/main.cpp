// mx-importer: imports the files of every active connector's drop folder into mailboxes
// (see importer.hpp and docs/importer.md). Also the parse worker ("--parse-worker", started
// by the daemon itself).
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "bounce_sender.hpp"
#include "global/logging.hpp"
#include "importer.hpp"
#include "message_json.hpp"
#include "target_http.hpp"
#include "util/privdrop.hpp"
#include "util/service.hpp"

namespace {

// Switches to cfg.user when started as root (the daemon binds nothing, so right away); the
// one verified switch both daemons and mxctl use (util/privdrop.hpp).
void drop_privileges(const mx::config& cfg) {
    if (!cfg.user || ::geteuid() != 0) return;
    auto acct = mx::util::lookup_account(*cfg.user);
    if (!acct)
        throw std::runtime_error("user '" + *cfg.user + "' (config key user) does not exist");
    mx::util::drop_privileges(*acct);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"mx-importer - import drop-folder files into mailboxes"};
    std::string config_path;
    bool worker = false, factory = false, drain = false, no_sandbox = false;
    std::size_t max_header_bytes = 100 * 1024;
    app.add_option("--config", config_path,
                   "configuration file (default: $MX_CONFIG or "
                   "/etc/mx-connector/mx-connector.toml)");
    app.add_flag("--drain", drain, "exit once no active drop folder has work left");
    app.add_flag("--parse-worker", worker, "internal: run as the parse worker");
    app.add_flag("--parse-worker-factory", factory,
                 "internal: run as the process parse workers are forked from");
    app.add_option("--max-header-bytes", max_header_bytes, "internal: parse worker header cap");
    app.add_flag("--no-parse-sandbox", no_sandbox, "internal: parse worker without seccomp");
    std::string message_json, top_json = "{}";
    std::uint64_t inline_max = 0;
    app.add_option("--message-json", message_json,
                   "internal: the webhook JSON document of FILE (mxctl's converter child)");
    app.add_option("--inline-max", inline_max, "internal: with --message-json");
    app.add_option("--top", top_json, "internal: with --message-json");
    CLI11_PARSE(app, argc, argv);

    if (!message_json.empty())
        return mx::importer::message_json_main(message_json, inline_max, top_json);
    // The webhook target's converter child runs the GMime walk in-process (after fork).
    mx::importer::set_message_converter(&mx::importer::message_document);

    if (worker || factory) {
        mx::importer::parse_limits limits;
        limits.max_header_bytes = max_header_bytes;
        return factory ? mx::importer::parse_worker_factory_main(0, limits, !no_sandbox)
                       : mx::importer::parse_worker_main(0, 1, limits, !no_sandbox);
    }
    try {
        auto cfg = mx::load_config(mx::resolve_config_path(config_path));
        mx::setup_logging(cfg, "mx-importer");
        drop_privileges(cfg);
        mx::importer::daemon_options o;
        o.drain = drain;
        o.self_exe = "/proc/self/exe";
        mx::importer::daemon d(cfg, o);

        // ---- periodic tasks of the main loop: ONE line each ---------------------------------
        d.add_task({"bounce-sender", std::chrono::seconds(2), mx::bounce_sender_tick(cfg)});
        d.add_task({"sd-notify", std::chrono::seconds(1), [] {  // systemd: READY once, WATCHDOG
                        mx::util::service::notify_ready();
                        mx::util::service::notify_watchdog();
                    }});
        // ---------------------------------------------------------------------------------------

        return d.run();
    } catch (const mx::config_error& e) {
        std::cerr << "mx-importer: " << e.what() << "\n";
        return 78;  // EX_CONFIG
    } catch (const std::exception& e) {
        spdlog::critical("mx-importer: {}", e.what());
        std::cerr << "mx-importer: " << e.what() << "\n";
        return 1;
    }
}
