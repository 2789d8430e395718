// mxctl postfix setup [--dry-run] [--remove]: wires Postfix for MX Connector with Postfix's own
// editor (postconf -e / -M / -P / -F), exactly the settings of postfix-conf/ (docs/postfix.md).
//
// How: the edits are made on a copy of main.cf and master.cf in a private temporary folder,
// the unified diff is shown, and (unless --dry-run) the originals are saved as
// main.cf.mx-backup-TIMESTAMP / master.cf.mx-backup-TIMESTAMP, the edited copies replace them
// (rename in the same folder), and a running Postfix is reloaded. The values that were there
// before our first setup are kept in DIR/mx-connector-setup.json, which --remove restores (our
// entries are taken out of list values, so what the admin added since stays).
// Promises: idempotent (a second run shows "nothing to change"); never a duplicate main.cf
// key (postconf -e edits a key in place); lists keep the admin's entries (smtpd_milters,
// virtual_mailbox_domains), smtpd_relay_restrictions is only extended when it lacks an
// *_unauth_destination rule; refuses (changing nothing) when lmdb: tables are missing or the
// existing wiring conflicts.
// Security: runs postconf/diff/postfix without a shell; the working copies live in a 0700
// folder; files are replaced by rename with the original's owner and mode.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "global/postfix_conf.hpp"
#include "mxctl.hpp"
#include "postconf.hpp"
#include "util/fs.hpp"

namespace mx::admin {
namespace {

namespace fs = std::filesystem;

struct setup_options {
    std::string dir = "/etc/postfix";
    bool dry_run = false;
    bool remove = false;
    bool no_reload = false;
};

constexpr const char* saved_name = "mx-connector-setup.json";
const std::vector<std::string> list_keys = {"smtpd_milters", "virtual_mailbox_domains"};

// A private 0700 folder holding copies of main.cf and master.cf; removed on destruction.
class work_copy {
  public:
    explicit work_copy(const std::string& dir) : src_(dir) {
        std::string tmpl = (fs::temp_directory_path() / "mxctl-postfix-XXXXXX").string();
        if (!::mkdtemp(tmpl.data()))
            throw cli_error("mkdtemp: " + std::string(std::strerror(errno)));
        path_ = tmpl;
        for (const char* f : {"main.cf", "master.cf"})
            fs::copy_file(src_ / f, path_ / f, fs::copy_options::overwrite_existing);
    }
    ~work_copy() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    work_copy(const work_copy&) = delete;
    work_copy& operator=(const work_copy&) = delete;
    const fs::path& path() const { return path_; }

  private:
    fs::path src_, path_;
};

void must(const util::run_result& r, const std::string& what) {
    if (r.status != 0)
        throw cli_error(what + " failed: " + (r.err.empty() ? r.error : r.err.substr(0, 500)));
}

std::string timestamp() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
    return buf;
}

// diff -u of the original and the edited copy; empty when equal.
std::string unified_diff(const fs::path& orig, const fs::path& edited) {
    auto r = util::run_program({"diff", "-u", "--label", orig.string(), "--label",
                                orig.string() + " (new)", orig.string(), edited.string()});
    if (r.status > 1) throw cli_error("diff failed: " + r.err + r.error);
    return r.out;
}

// Replaces dir/name by the edited copy (same owner and mode), after a timestamped backup.
void install(const fs::path& dir, const fs::path& edited, const char* name,
             const std::string& stamp) {
    fs::path target = dir / name;
    struct stat st {};
    if (::stat(target.c_str(), &st) != 0) throw cli_error(target.string() + ": cannot stat");
    fs::path backup = dir / (std::string(name) + ".mx-backup-" + stamp);
    fs::copy_file(target, backup, fs::copy_options::overwrite_existing);
    fs::path tmp = dir / (std::string(".") + name + ".mx-new");
    fs::copy_file(edited / name, tmp, fs::copy_options::overwrite_existing);
    if (::chown(tmp.c_str(), st.st_uid, st.st_gid) != 0 ||
        ::chmod(tmp.c_str(), st.st_mode & 07777) != 0)
        throw cli_error(tmp.string() + ": cannot set owner/mode: " + std::strerror(errno));
    fs::rename(tmp, target);
    std::cout << "saved " << backup.string() << "\n";
}

// ---- setup --------------------------------------------------------------------------------

postfix::wiring plan(mxctl_context& ctx, postconf& pf) {
    const auto& cfg = ctx.cfg();
    if (!cfg.user)
        throw cli_error("set `user` in " + cfg.file.string() +
                        " first: virtual(8) "
                        "delivers into the drop folders as that account");
    auto acct = util::lookup_account(*cfg.user);
    if (!acct) throw cli_error("account '" + *cfg.user + "' does not exist");
    postfix::current_main now;
    now.virtual_mailbox_domains = pf.get_explicit("virtual_mailbox_domains");
    now.virtual_mailbox_maps = pf.get_explicit("virtual_mailbox_maps");
    now.smtpd_milters = pf.get_explicit("smtpd_milters");
    now.non_smtpd_milters = pf.get_explicit("non_smtpd_milters");
    now.smtpd_relay_restrictions = pf.get_explicit("smtpd_relay_restrictions");
    now.smtpd_recipient_restrictions = pf.get_explicit("smtpd_recipient_restrictions");
    if (auto v = pf.get("parent_domain_matches_subdomains"))
        now.parent_domain_matches_subdomains = *v;
    now.queue_directory = pf.queue_dir();
    try {
        return postfix::plan_wiring(cfg, now, acct->uid, acct->gid);
    } catch (const std::invalid_argument& e) {
        throw cli_error(std::string(e.what()) + " (nothing changed)");
    }
}

// smtpd services that must leave the chroot to reach a milter socket outside the queue dir.
std::vector<std::string> chrooted_smtpd(mxctl_context& ctx, postconf& pf) {
    std::vector<std::string> out;
    auto ours = postfix::parse_libmilter_spec(ctx.cfg().milter.socket);
    auto tables = postfix::milter_tables_of(ctx.cfg());
    bool outside =
        (ours && ours->is_unix && !postfix::inside_queue_dir(ours->path, pf.queue_dir())) ||
        (!tables.socketmap.empty() && !postfix::inside_queue_dir(tables.socketmap, pf.queue_dir()));
    if (!outside) return out;
    for (const auto& s : pf.services())
        if ((s.command == "smtpd" || s.command == "trivial-rewrite") && s.chrooted())
            out.push_back(s.id());
    return out;
}

// What is there now for everything setup changes. The first setup records it all; a later
// one (e.g. switching to table mode) only adds the keys it touches for the first time, so
// --remove still restores what was there before MX Connector.
nlohmann::json record_before(postconf& pf, const postfix::wiring& w,
                             const std::vector<std::string>& chroot_off,
                             std::optional<nlohmann::json> earlier) {
    if (earlier) {
        for (const auto& [k, v] : w.main) {
            if (earlier->at("main").contains(k)) continue;
            auto now = pf.get_explicit(k);
            (*earlier)["main"][k] = now ? nlohmann::json(*now) : nlohmann::json(nullptr);
        }
        return *earlier;
    }
    nlohmann::json saved = {{"main", nlohmann::json::object()}, {"chroot_on", chroot_off}};
    for (const auto& [k, v] : w.main) {
        auto now = pf.get_explicit(k);
        saved["main"][k] = now ? nlohmann::json(*now) : nlohmann::json(nullptr);
    }
    auto r = pf.run({"-M", "virtual/unix"});
    saved["virtual"] = r.status == 0 && !r.out.empty() ? nlohmann::json(r.out) : nlohmann::json();
    return saved;
}

// Does master.cf's virtual service already read our tables (in any spelling: -o a=b,c or
// -o { a = b, c })? Then it is left as the admin or an earlier setup wrote it.
bool virtual_wired(postconf& pf, const postfix::wiring& w) {
    for (const auto& s : pf.services()) {
        if (s.id() != "virtual/unix" || s.command != "virtual") continue;
        auto o = postfix::service_override(s, "virtual_mailbox_maps");
        return o && postfix::split_list(*o) == postfix::split_list(w.virtual_maps);
    }
    return false;
}

void edit_for_setup(postconf& pf, postconf& work, const postfix::wiring& w,
                    const std::vector<std::string>& chroot_off) {
    // One key per call: postconf -e appends new keys in its own order otherwise, and main.cf
    // reads better in the order of postfix-conf/main.cf.fragment.
    // A key that already has the value is left alone (its spelling too).
    for (const auto& [k, v] : w.main)
        if (pf.get_explicit(k) != v) must(work.run({"-e", k + " = " + v}), "postconf -e " + k);
    if (!virtual_wired(pf, w)) {
        must(work.run({"-M", "virtual/unix=" + w.virtual_service}), "postconf -M virtual/unix");
        if (!w.virtual_maps.empty())
            must(work.run({"-P", "virtual/unix/virtual_mailbox_maps=" + w.virtual_maps}),
                 "postconf -P virtual/unix");
    }
    for (const auto& id : chroot_off) must(work.run({"-F", id + "/chroot=n"}), "postconf -F " + id);
}

// ---- remove -------------------------------------------------------------------------------

void edit_for_remove(mxctl_context& ctx, postconf& pf, postconf& work,
                     const nlohmann::json& saved) {
    auto tables = postfix::milter_tables_of(ctx.cfg());
    auto ours = postfix::parse_libmilter_spec(ctx.cfg().milter.socket);
    std::vector<std::string> ours_items = {"lmdb:" + tables.domain_table,
                                           "socketmap:unix:" + tables.socketmap + ":domain"};
    if (ours) ours_items.push_back(postfix::postfix_address(*ours, pf.queue_dir()));
    auto access = postfix::recipient_access_entry(tables);
    for (const auto& [k, before] : saved.at("main").items()) {
        std::optional<std::string> value;
        if (k == "smtpd_recipient_restrictions") {
            // Table mode's access check goes; the admin's other rules stay.
            std::string v = pf.get_explicit(k).value_or("");
            std::string b = before.is_null() ? "" : before.get<std::string>();
            if (postfix::restrictions_without(b, access) == b)
                v = postfix::restrictions_without(v, access);
            if (!v.empty() || !before.is_null()) value = v;
        } else if (std::find(list_keys.begin(), list_keys.end(), k) != list_keys.end()) {
            // What was added since stays; our entries go unless they were there before.
            std::string v = pf.get_explicit(k).value_or("");
            auto had = postfix::split_list(before.is_null() ? "" : before.get<std::string>());
            for (const auto& item : ours_items)
                if (std::find(had.begin(), had.end(), item) == had.end())
                    v = postfix::list_without(v, item);
            if (!v.empty() || !before.is_null()) value = v;
        } else if (!before.is_null()) {
            value = before.get<std::string>();
        }
        if (value)
            must(work.run({"-e", k + " = " + *value}), "postconf -e " + k);
        else
            must(work.run({"-X", k}), "postconf -X " + k);
    }
    if (saved.at("virtual").is_string()) {
        auto line = saved["virtual"].get<std::string>();
        while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
        must(work.run({"-M", "virtual/unix=" + line}), "postconf -M virtual/unix");
    } else {
        must(work.run({"-MX", "virtual/unix"}), "postconf -MX virtual/unix");
    }
    for (const auto& id : saved.at("chroot_on"))
        must(work.run({"-F", id.get<std::string>() + "/chroot=y"}), "postconf -F");
}

// ---- the verb -----------------------------------------------------------------------------

void reload(const setup_options& o) {
    if (o.no_reload) return;
    if (util::run_program({"postfix", "-c", o.dir, "status"}).status != 0) {
        std::cout << "Postfix is not running: the change applies when it starts\n";
        return;
    }
    must(util::run_program({"postfix", "-c", o.dir, "reload"}), "postfix reload");
    std::cout << "postfix reload: done\n";
}

void run_setup(mxctl_context& ctx, const setup_options& o) {
    fs::path dir = o.dir;
    if (!fs::exists(dir / "main.cf") || !fs::exists(dir / "master.cf"))
        throw cli_error("no Postfix configuration in " + dir.string() +
                        " (main.cf, master.cf); give it with -c DIR");
    postconf pf(dir.string());
    fs::path saved_path = dir / saved_name;
    nlohmann::json saved;
    bool record_changed = false;
    work_copy copy(dir.string());
    postconf work(copy.path().string());
    if (o.remove) {
        if (!fs::exists(saved_path))
            throw cli_error("no " + saved_path.string() +
                            ": mxctl postfix setup was not run "
                            "here (the backups main.cf.mx-backup-* can be restored by hand)");
        saved = nlohmann::json::parse(util::read_file(saved_path));
        edit_for_remove(ctx, pf, work, saved);
    } else {
        auto types = pf.map_types();
        if (types && !types->count("lmdb"))
            throw cli_error(
                "this Postfix cannot open lmdb: tables (postconf -m): install them "
                "first: apt install postfix-lmdb (nothing changed)");
        auto w = plan(ctx, pf);
        auto chroot_off = chrooted_smtpd(ctx, pf);
        std::optional<nlohmann::json> earlier;
        if (fs::exists(saved_path)) earlier = nlohmann::json::parse(util::read_file(saved_path));
        saved = record_before(pf, w, chroot_off, earlier);
        record_changed = !earlier || saved != *earlier;
        edit_for_setup(pf, work, w, chroot_off);
    }
    std::string diff = unified_diff(dir / "main.cf", copy.path() / "main.cf") +
                       unified_diff(dir / "master.cf", copy.path() / "master.cf");
    if (diff.empty() && !o.remove) {
        std::cout << "Postfix in " << dir.string()
                  << " is wired for MX Connector: nothing to change\n";
        return;
    }
    std::cout << diff;
    if (o.dry_run) {
        std::cout << "dry run: nothing changed\n";
        return;
    }
    auto stamp = timestamp();
    if (!diff.empty()) {
        install(dir, copy.path(), "main.cf", stamp);
        install(dir, copy.path(), "master.cf", stamp);
    }
    if (o.remove)
        fs::remove(saved_path);
    else if (record_changed)
        util::write_file_durable(saved_path, saved.dump(1) + "\n", 0644);
    std::cout << (o.remove ? "MX Connector wiring removed from "
                           : "Postfix wired for MX Connector in ")
              << dir.string() << "\n";
    if (!diff.empty()) reload(o);
}

}  // namespace

void add_postfix_commands(CLI::App& app, mxctl_context& ctx) {
    auto* pf = app.add_subcommand("postfix", "wire Postfix for MX Connector");
    pf->require_subcommand(1);
    auto* setup = pf->add_subcommand(
        "setup",
        "apply MX Connector's main.cf/master.cf settings with postconf (shows the diff first, "
        "keeps a backup; --remove undoes it)");
    auto o = std::make_shared<setup_options>();
    if (const char* mc = std::getenv("MAIL_CONFIG"); mc && *mc) o->dir = mc;
    setup
        ->add_option("-c,--postfix-config", o->dir,
                     "Postfix configuration directory (default: $MAIL_CONFIG or /etc/postfix)")
        ->capture_default_str();
    setup->add_flag("--dry-run", o->dry_run, "only show the diff");
    setup->add_flag("--remove", o->remove, "restore what setup changed");
    setup->add_flag("--no-reload", o->no_reload, "do not reload a running Postfix");
    setup->callback([&ctx, o] {
        std::error_code ec;
        if (auto abs = fs::absolute(o->dir, ec); !ec) o->dir = abs.lexically_normal().string();
        run_setup(ctx, *o);
    });
}

}  // namespace mx::admin
