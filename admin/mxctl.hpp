// mxctl: private header of the administration CLI. Each cmd_*.cpp adds one verb group.
//
// Conventions every verb follows: errors go to stderr as "mxctl: <what to fix>" with a
// non-zero exit status (1 error, 2 usage); a refused change changes nothing (one store
// transaction per command); listings have --json; secrets are shown as "***" and are only
// exported with an explicit --with-secrets.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "global/config.hpp"
#include "global/secrets.hpp"
#include "global/shm_state.hpp"
#include "global/store.hpp"
#include "ops/ops.hpp"
#include "util/privdrop.hpp"

namespace mx::admin {

// An error whose message is the whole story for the user (the shared operations' error type).
using cli_error = ops::op_error;

// The operations (admin/ops) run on this context; mx-console provides its own.
struct mxctl_context : ops::env {
    std::string config_path;
    int exit_code = 0;

    const config& cfg() override;
    store& open_store() override;  // read-write, created when missing
    store& open_store_read_only()
        override;  // for verbs that only look (works without write access)
    secret_store& secrets() override;
    bool no_wait() override { return no_wait_flag; }
    bool no_wait_flag = false;  // --no-wait (cmd_cluster.cpp)
    shm_state* shm();           // nullptr if the segment cannot be attached
    // Run as root with `user` set: becomes that account for good (creating state_dir first
    // when missing). Every accessor above calls it; a verb that reaches state another way
    // (journal, drop folders) calls it before. No-op otherwise, and after the first call.
    void as_state_owner();
    // The account as_state_owner() switches to; nullopt when not root or no `user` is set.
    // Throws cli_error when `user` names no account.
    std::optional<util::account> state_owner();
    // For a verb that keeps root for something else (mail logs, a --textfile, Postfix): runs
    // fn as the state owner in a child (util::run_as) when there is one, else here, and
    // returns its result. LMDB opens lock files read-write by path even for a read-only look.
    std::string read_as_state_owner(const std::function<std::string()>& fn);

  private:
    std::optional<config> cfg_;
    std::optional<store> store_;
    std::optional<secret_store> secrets_;
    std::optional<shm_state> shm_;
    bool shm_tried_ = false;
    bool state_owner_checked_ = false;
};

void add_connector_commands(CLI::App& app, mxctl_context& ctx);
void add_domain_commands(CLI::App& app, mxctl_context& ctx);
void add_mailbox_commands(CLI::App& app, mxctl_context& ctx);
void add_check_command(CLI::App& app, mxctl_context& ctx);
void add_export_apply_commands(CLI::App& app, mxctl_context& ctx);
void add_stats_command(CLI::App& app, mxctl_context& ctx);
void add_failed_commands(CLI::App& app,
                         mxctl_context& ctx);  // failed ..., import-status (cmd_failed.cpp)
void add_doctor_command(CLI::App& app, mxctl_context& ctx);    // doctor (doctor/)
void add_smtp_commands(CLI::App& app, mxctl_context& ctx);     // smtp-test, send, mailbox oauth
void add_target_commands(CLI::App& app, mxctl_context& ctx);   // target-test (cmd_target.cpp)
void add_postfix_commands(CLI::App& app, mxctl_context& ctx);  // postfix setup (cmd_postfix.cpp)
void add_console_commands(CLI::App& app, mxctl_context& ctx);  // console user ... (cmd_console.cpp)
void add_cluster_commands(CLI::App& app, mxctl_context& ctx);  // cluster ..., --no-wait

// Helpers shared by the verbs.
using ops::normalize_mailbox_arg;  // "Bob@Ex.COM" / "@ex.com"
void print_json(const nlohmann::json& j);
// Prints rows as aligned columns (first row is the header).
void print_table(const std::vector<std::vector<std::string>>& rows);
// Refuses (cli_error) a target the importer could not use as written, e.g. a webhook that
// would send credentials over plain http:// to a non-loopback host (admin/ops).
using ops::check_target_spec;
// Reads a secret value: "-" means one line from stdin (keeps it out of shell history).
using ops::read_secret_value;

}  // namespace mx::admin
