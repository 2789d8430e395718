// mxctl context: lazily loaded config, store, secret store and shared-memory segment.
//
// Security: when mxctl runs as root and the config names a daemon account (`user`), every verb
// becomes that account for good before it touches anything under state_dir, mail_root or the
// drop folders (as_state_owner(), called by every state accessor here). Those folders belong
// to the daemon account, which could plant symlinks in them; a root process opening, creating
// or chown()ing through them would hand root's files to that account. Running as the account
// instead means whatever mxctl creates (LMDB files, the OAuth cache, Maildirs of target-test)
// is already the daemons', nothing needs chown, and a planted symlink leads only where the
// account could go itself. Only the state folder itself is created by root when missing, in
// its root-owned parent (util::make_dir_for).
#include <unistd.h>

#include <iostream>
#include <system_error>

#include "mxctl.hpp"
#include "util/fs.hpp"
#include "util/privdrop.hpp"

namespace mx::admin {

const config& mxctl_context::cfg() {
    if (!cfg_) cfg_ = load_config(resolve_config_path(config_path));
    return *cfg_;
}

std::optional<util::account> mxctl_context::state_owner() {
    if (::geteuid() != 0 || !cfg().user) return std::nullopt;
    auto acct = util::lookup_account(*cfg().user);
    if (!acct)
        throw cli_error("user '" + *cfg().user + "' (config key user in " + cfg().file.string() +
                        ") does not exist: create it (systemd-sysusers) or fix the config");
    if (acct->uid == 0) return std::nullopt;
    return acct;
}

std::string mxctl_context::read_as_state_owner(const std::function<std::string()>& fn) {
    auto owner = state_owner();
    return owner ? util::run_as(*owner, fn) : fn();
}

void mxctl_context::as_state_owner() {
    if (state_owner_checked_) return;
    auto acct = state_owner();
    state_owner_checked_ = true;
    if (!acct) return;
    std::error_code ec;
    if (!std::filesystem::exists(cfg().state_dir, ec)) {
        try {
            util::make_dir_for(cfg().state_dir, 0750, acct->uid, acct->gid);
        } catch (const std::system_error& e) {
            throw cli_error(std::string("cannot create the state folder for ") + acct->name + ": " +
                            e.what());
        }
    }
    try {
        util::drop_privileges(*acct);
    } catch (const std::system_error& e) {
        // A half-done switch must not go on: exit through main's handler.
        throw cli_error(std::string("cannot switch to the daemon account: ") + e.what());
    }
}

store& mxctl_context::open_store() {
    as_state_owner();
    if (!store_) {
        store_ = store::open(cfg(), false);
        if (auto* s = shm()) store_->attach(s);
    }
    return *store_;
}

store& mxctl_context::open_store_read_only() {
    as_state_owner();
    if (store_) return *store_;
    if (!std::filesystem::exists(cfg().store_dir() / "data.mdb"))
        throw cli_error("no store at " + cfg().store_dir().string() +
                        " yet (create a connector first: mxctl connector add)");
    try {
        return open_store();
    } catch (const lmdb::error&) {
        store_ = store::open(cfg(), true);  // e.g. no write access: looking is still fine
        return *store_;
    }
}

secret_store& mxctl_context::secrets() {
    as_state_owner();
    if (!secrets_) secrets_ = secret_store::open(cfg(), false);
    return *secrets_;
}

shm_state* mxctl_context::shm() {
    as_state_owner();
    if (!shm_tried_) {
        shm_tried_ = true;
        try {
            shm_ = shm_state::attach(cfg());
        } catch (const std::exception& e) {
            std::cerr << "mxctl: warning: shared memory unavailable (" << e.what()
                      << "); daemons notice changes at their next periodic check\n";
        }
    }
    return shm_ ? &*shm_ : nullptr;
}

}  // namespace mx::admin
