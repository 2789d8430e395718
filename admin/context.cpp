// mxctl context: lazily loaded config, store, secret store and shared-memory segment.
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <iostream>

#include "mxctl.hpp"

namespace mx::admin {

const config& mxctl_context::cfg() {
    if (!cfg_) cfg_ = load_config(resolve_config_path(config_path));
    return *cfg_;
}

store& mxctl_context::open_store() {
    if (!store_) {
        store_ = store::open(cfg(), false);
        if (auto* s = shm()) store_->attach(s);
        fix_ownership();
    }
    return *store_;
}

store& mxctl_context::open_store_read_only() {
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
    if (!secrets_) {
        secrets_ = secret_store::open(cfg(), false);
        fix_ownership();
    }
    return *secrets_;
}

shm_state* mxctl_context::shm() {
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

void mxctl_context::fix_ownership() {
    if (geteuid() != 0 || !cfg().user) return;
    struct passwd* pw = getpwnam(cfg().user->c_str());
    if (!pw) return;
    std::error_code ec;
    for (const auto& dir : {cfg().store_dir(), cfg().secrets_dir()}) {
        if (!std::filesystem::exists(dir, ec)) continue;
        (void)::chown(dir.c_str(), pw->pw_uid, pw->pw_gid);
        for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
            (void)::chown(entry.path().c_str(), pw->pw_uid, pw->pw_gid);
    }
}

}  // namespace mx::admin
