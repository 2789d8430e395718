// doctor: the model behind `mxctl doctor` — findings, the state the check groups share, and
// one function per check group (each in its own file in this folder).
//
// How it fits: cmd_doctor.cpp registers the verb and runs the groups listed in check_groups()
// in order; a group reads what earlier groups found (the daemon account, the connectors, the
// Postfix configuration) from doctor_state and adds findings to the report. Adding a check:
// write a function `void check_x(doctor_state&)` and add one line to check_groups().
// Promises: checks only read (the --probe SMTP session ends before DATA); external programs
// run without a shell and with a deadline (util::spawn); no secret value is ever printed.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "global/model.hpp"
#include "mxctl.hpp"
#include "postconf.hpp"
#include "util/privdrop.hpp"

namespace mx::admin::doctor {

enum class level { ok, warn, fail };
std::string_view to_string(level l);

struct finding {
    std::string check;
    level status = level::ok;
    std::string message;
    std::string fix;
};

class report {
  public:
    void ok(const std::string& check, const std::string& msg) { add(check, level::ok, msg, {}); }
    void warn(const std::string& check, const std::string& msg, const std::string& fix) {
        add(check, level::warn, msg, fix);
    }
    void fail(const std::string& check, const std::string& msg, const std::string& fix) {
        add(check, level::fail, msg, fix);
    }
    const std::vector<finding>& findings() const { return f_; }
    bool any(level l) const;
    // Text (one line per finding, fixes indented, a summary) or JSON ({ok, findings}).
    void print(bool json, bool strict) const;

  private:
    void add(const std::string& c, level l, const std::string& m, const std::string& fix) {
        f_.push_back({c, l, m, fix});
    }
    std::vector<finding> f_;
};

struct options {
    std::string postfix_dir = "/etc/postfix";
    bool json = false;
    bool strict = false;
    bool probe = false;  // live SMTP RCPT probes through Postfix
    std::vector<std::string> skip;
    int oauth_margin_seconds = 600;
    int backlog_warn_seconds = 900;
    int heartbeat_seconds = 15;
};

// What the check groups share. Filled in order: config (user), store (connectors), postfix.
struct doctor_state {
    doctor_state(mxctl_context& c, const options& o) : ctx(c), opt(o) {}
    mxctl_context& ctx;
    const options& opt;
    report r;
    std::optional<util::account> user;  // the daemon account ([user] in the config)
    std::vector<connector> connectors;
    bool have_store = false;
    std::unique_ptr<postconf> pf;  // set when Postfix's configuration could be read

    const config& cfg() { return ctx.cfg(); }
    bool want(const std::string& group) const;
    // "mxctl [--config PATH]" for the fixes we print.
    std::string cmd_prefix() const;
    // Runs fn as the state owner when run as root with `user` set (see mxctl_context).
    std::string read_state(const std::function<std::string()>& fn);
};

// One check group: a name for --skip and the function that runs it.
struct check_group {
    std::string name;
    std::function<void(doctor_state&)> run;
};
const std::vector<check_group>& check_groups();

// The groups (one file each).
bool check_config(doctor_state& d);        // check_state.cpp (false: stop here)
void check_store(doctor_state& d);         // check_state.cpp
void check_secrets(doctor_state& d);       // check_state.cpp
void check_daemons(doctor_state& d);       // check_daemons.cpp
void check_postfix(doctor_state& d);       // check_postfix.cpp
void check_milter(doctor_state& d);        // check_milter.cpp (milter + socketmap)
void check_domains(doctor_state& d);       // check_maps.cpp (Postfix's own lookups)
void check_sendmail(doctor_state& d);      // check_sendmail.cpp (when Sendmail is configured)
void check_drop_folders(doctor_state& d);  // check_drop.cpp
void check_failed(doctor_state& d);        // check_drop.cpp (ImportFailed, backlog)
void check_smtp(doctor_state& d);          // check_smtp.cpp (outgoing servers)
void check_oauth(doctor_state& d);         // check_oauth.cpp
void check_probe(doctor_state& d);         // check_probe.cpp (--probe only)
void check_cluster(doctor_state& d);       // check_cluster.cpp ([cluster] only)

// Small helpers the groups share (report.cpp).
std::string mode_string(unsigned mode);
std::string age_string(std::int64_t seconds);
// Can `a` reach path (x on every folder above it) and use it with `want` (4 r, 2 w, 1 x)?
// nullopt when yes, else what stops it (check_drop.cpp).
std::optional<std::string> access_problem(const util::account& a, const std::string& path,
                                          unsigned want);
// "a.b" for "a.b", "mx-doctor.b" for ".b" (a concrete domain of a connector pattern).
std::string concrete_domain(const std::string& pattern);

}  // namespace mx::admin::doctor
