// doctor check groups "config", "store" and "secrets": the configuration file and the daemon
// account, the LMDB store (read as the state owner), the secret store's owner and modes.
#include <grp.h>
#include <sys/stat.h>

#include <filesystem>

#include "doctor/doctor.hpp"

namespace mx::admin::doctor {

bool check_config(doctor_state& d) {
    try {
        const auto& c = d.cfg();
        d.r.ok("config", "configuration " + c.file.string() + " loads");
    } catch (const std::exception& e) {
        d.r.fail("config", e.what(),
                 "fix the file, or point to it with --config PATH / MX_CONFIG "
                 "(example: /usr/share/doc/mx-connector/examples/mx-connector.toml)");
        return false;
    }
    if (d.cfg().user) {
        d.user = util::lookup_account(*d.cfg().user);
        if (!d.user)
            d.r.fail("config", "daemon user '" + *d.cfg().user + "' does not exist",
                     "systemd-sysusers (package) or: useradd --system --user-group "
                     "--shell /usr/sbin/nologin " +
                         *d.cfg().user);
        else
            d.r.ok("config", "daemon user " + *d.cfg().user + " exists (uid " +
                                 std::to_string(d.user->uid) + ")");
    } else {
        d.r.warn("config", "no `user` set: the daemons keep the account they are started as",
                 "set user = \"mxconnector\" so the daemons drop root after start-up");
    }
    const auto& g = d.cfg().milter.socket_group;
    if (!g.empty() && !::getgrnam(g.c_str()))
        d.r.fail("config", "[milter] socket_group '" + g + "' does not exist",
                 "set socket_group to the group of Postfix's smtpd (normally postfix)");
    return true;
}

void check_store(doctor_state& d) {
    auto dir = d.cfg().store_dir();
    if (!std::filesystem::exists(dir / "data.mdb")) {
        d.r.fail("store", "no store at " + dir.string(),
                 "create the first connector: " + d.cmd_prefix() +
                     " connector add NAME --drop-folder PATH --domain DOMAIN");
        return;
    }
    try {
        auto j = nlohmann::json::parse(d.read_state([&] {
            auto s = store::open(dir, true);
            auto v = s.read();
            nlohmann::json out = {{"generation", v.generation()},
                                  {"mailboxes", v.mailbox_count()},
                                  {"connectors", nlohmann::json::array()}};
            for (const auto& c : v.connectors()) out["connectors"].push_back(to_json(c));
            return out.dump();
        }));
        std::vector<connector> conns;
        for (const auto& c : j.at("connectors")) conns.push_back(connector_from_json(c));
        d.r.ok("store", "store " + dir.string() + " readable: " + std::to_string(conns.size()) +
                            " connector(s), " +
                            std::to_string(j.at("mailboxes").get<std::uint64_t>()) +
                            " mailbox(es), generation " +
                            std::to_string(j.at("generation").get<std::uint64_t>()));
        d.connectors = std::move(conns);
        d.have_store = true;
    } catch (const std::exception& e) {
        d.r.fail("store", "store " + dir.string() + " cannot be read: " + e.what(),
                 "check the owner/mode of " + dir.string() +
                     "; restore from a backup (mdb_copy / mxctl export) if it is damaged");
        return;
    }
    if (d.user) {
        for (const char* f : {"data.mdb", "lock.mdb"}) {
            struct stat st {};
            if (::stat((dir / f).c_str(), &st) != 0) continue;
            if (st.st_uid != d.user->uid)
                d.r.fail("store",
                         (dir / f).string() + " is not owned by " + d.user->name +
                             " (the milter needs to write the reader lock table)",
                         "chown -R " + d.user->name + ": " + dir.string());
        }
    }
}

void check_secrets(doctor_state& d) {
    auto dir = d.cfg().secrets_dir();
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
        d.r.ok("secrets", "no secret store yet (" + dir.string() + ")");
        return;
    }
    bool bad = false;
    if ((st.st_mode & 077) != 0) {
        bad = true;
        d.r.fail("secrets",
                 dir.string() + " has mode " + mode_string(st.st_mode) +
                     ": other accounts can read secrets",
                 "chmod 0700 " + dir.string() + " && chmod 0600 " + dir.string() + "/*");
    }
    if (d.user && st.st_uid != d.user->uid) {
        bad = true;
        d.r.fail("secrets", dir.string() + " is not owned by " + d.user->name,
                 "chown -R " + d.user->name + ": " + dir.string() +
                     " (mx-importer reads it to send mail)");
    }
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
        struct stat fs {};
        if (::stat(e.path().c_str(), &fs) == 0 && (fs.st_mode & 077) != 0) {
            bad = true;
            d.r.fail("secrets", e.path().string() + " has mode " + mode_string(fs.st_mode),
                     "chmod 0600 " + e.path().string());
        }
    }
    if (!bad) d.r.ok("secrets", "secret store " + dir.string() + " is private (0700/0600)");
}

}  // namespace mx::admin::doctor
