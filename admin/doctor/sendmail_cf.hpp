// sendmail_cf: reads a generated sendmail.cf (what `m4 sendmail.mc` wrote) and checks, without
// running anything, that it holds MX Connector's Sendmail wiring (postfix-conf/sendmail.mc):
// the milter (X line named in InputMailFilters, F=T), the mailertable map served by mx-milter's
// socketmap, the relay map and the rule that uses it, and the mxdrop mailer.
//
// Used by doctor's "sendmail" group (check_sendmail.cpp, which adds the live checks: the
// socketmap answers, the mailer program is executable by its account); unit tested on
// generated .cf text (tests/admin/doctor/test_sendmail_cf.cpp).
// Promises: parse_cf() never throws on odd input (unknown lines are ignored); the checks name
// the .cf line that is missing or wrong and the sendmail.mc line that makes it.
// Security: the text comes from a root-owned file; nothing here opens files or runs programs.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "global/postfix_conf.hpp"

namespace mx::admin::doctor::sendmail {

// "Xname, S=local:/run/x.sock, F=T, T=C:10s;..." (INPUT_MAIL_FILTER).
struct filter {
    std::string name, socket, flags;
};
// "Kname class -flags... argument" (FEATURE(mailertable, ...), LOCAL_CONFIG K lines).
struct map_def {
    std::string name, map_class;
    std::vector<std::string> flags;  // "-T<TMPF>", ...
    std::string argument;            // for class socket: "local:/run/x.sock"
};
// "Mname, P=/path, F=flags, U=user[:group], ..., A=argv" (continuation lines folded).
struct mailer {
    std::string name, program, flags, user, argv;
};

struct cf {
    bool has_input_filters = false;          // an "O InputMailFilters=" line
    std::vector<std::string> input_filters;  // its names, in order
    std::map<std::string, filter> filters;
    std::map<std::string, map_def> maps;
    std::map<std::string, mailer> mailers;
    std::map<std::string, std::vector<std::string>> rulesets;  // "S" name -> its R lines
};

// Parses the text of a sendmail.cf. Lines starting with blanks continue the previous line;
// '#' lines are comments.
cf parse_cf(std::string_view text);

// Does a Sendmail socket spec (local:PATH, unix:PATH, inet:PORT@HOST) designate `ours`?
bool same_socket(const std::string& sendmail_spec, const postfix::milter_endpoint& ours);

// What the wiring must name: [milter] socket, the socketmap path ([milter] socketmap; empty
// when disabled) and the mailer mx-milter's mailertable answers name.
struct expected {
    postfix::milter_endpoint milter;
    std::string milter_spec;  // as configured, for messages
    std::string socketmap;
    std::string mailer = "mxdrop";
};

// One result of the static checks: ok (message only) or a failure with its fix.
struct result {
    bool ok = true;
    std::string message;
    std::string fix;
};

// The static checks, in order: milter, mailertable, relay map and rule, mailer. The live
// checks use the mailer (when defined) and whether the mailertable is ours.
struct wiring_check {
    std::vector<result> results;
    const mailer* mx_mailer = nullptr;  // points into the checked cf
    bool mailertable_ours = false;
};
wiring_check check_wiring(const cf& c, const expected& want);

// "OK mxdrop:/srv/drop/demo" -> ("mxdrop", "/srv/drop/demo"); nullopt for anything else.
std::optional<std::pair<std::string, std::string>> parse_mailertable_answer(
    const std::string& answer);

}  // namespace mx::admin::doctor::sendmail
