// doctor check group "domains": Postfix's own view of our domains, asked the way Postfix asks.
//
// For each active connector domain, every table of the domain lists smtpd consults
// (virtual_mailbox_domains, relay_domains, mydestination) is looked up with
// `postmap -q DOMAIN TABLE` as Postfix's mail_owner account — so a table type this Postfix
// lacks (postfix-lmdb not installed), a file or socket that account cannot read, or a table
// that does not know the domain shows here as it would in smtpd: as a 451 or a 550 for every
// recipient. Then virtual(8)'s virtual_mailbox_maps (the master.cf override, else main.cf)
// must answer the connector's drop folder for an address of the domain.
#include <filesystem>
#include <set>

#include "doctor/doctor.hpp"
#include "global/postfix_conf.hpp"

namespace mx::admin::doctor {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t max_domains = 50;  // lookups are a process each

std::string install_hint(const std::string& type) {
    return type == "lmdb"
               ? std::string("apt install postfix-lmdb && postfix reload")
               : "install Postfix's " + type + " table support (postconf -m lists what is there)";
}

// Fails every table of `list` whose type this Postfix cannot open; true when all can.
bool check_types(doctor_state& d, const std::string& param, const std::string& list,
                 const std::set<std::string>& types) {
    bool ok = true;
    for (const auto& item : postfix::split_list(list)) {
        auto t = postfix::parse_table(item);
        if (!t || types.count(t->type)) continue;
        ok = false;
        d.r.fail("domains",
                 "Postfix cannot open " + t->type + ": tables (" + param + " = " + item +
                     "): every lookup through it fails (451 4.3.0 for every recipient)",
                 install_hint(t->type));
    }
    return ok;
}

// Which entry of a domain list answers for `domain` ("(listed)" or the table), as smtpd
// would find it; table errors are reported (smtpd tempfails on them) and stop the search.
std::optional<std::string> domain_answer(doctor_state& d, const std::string& param,
                                         const std::string& list, const std::string& domain,
                                         const std::optional<util::account>& owner, bool& error) {
    for (const auto& item : postfix::split_list(list)) {
        auto t = postfix::parse_table(item);
        if (!t) {
            if (item == domain) return "(listed)";
            continue;  // a /file of domains or $parameter: not looked into
        }
        auto l = d.pf->query(item, domain, owner);
        if (!l.error.empty()) {
            error = true;
            d.r.fail("domains",
                     param + " table " + item + " fails for " + domain + " (as " +
                         (owner ? owner->name : std::string("this account")) + "): " + l.error,
                     t->type == "lmdb" || t->type == "socketmap"
                         ? "check that mx-milter runs and that Postfix's account can read "
                           "what the table names (mxctl doctor --skip postfix shows the milter)"
                         : "fix the table (postmap -q " + domain + " " + item + ")");
            return std::nullopt;
        }
        if (l.value && !l.value->empty()) return item;
    }
    return std::nullopt;
}

void check_domain(doctor_state& d, const connector& c, const std::string& domain,
                  const std::optional<util::account>& owner) {
    bool error = false;
    std::string where;
    for (const char* param : {"virtual_mailbox_domains", "relay_domains", "mydestination"}) {
        auto list = d.pf->get(param).value_or("");
        if (auto w = domain_answer(d, param, list, domain, owner, error)) {
            where = std::string(param) + " " + *w;
            break;
        }
        if (error) return;
    }
    if (!where.empty()) {
        d.r.ok("domains", "Postfix knows " + domain + " (" + where + ")");
        return;
    }
    auto tables = postfix::milter_tables_of(d.cfg());
    d.r.fail("domains",
             "Postfix does not know domain " + domain + " of connector " + c.name +
                 " (it would reject or relay-deny before the milter is asked)",
             "mxctl postfix setup -c " + d.opt.postfix_dir + " (or: postconf -c " +
                 d.opt.postfix_dir + " -e 'virtual_mailbox_domains = lmdb:" + tables.domain_table +
                 ", socketmap:unix:" +
                 (tables.socketmap.empty() ? std::string("PATH") : tables.socketmap) +
                 ":domain' && postfix reload)");
}

// virtual(8)'s tables for the drop folders: the master.cf override of the virtual service,
// else main.cf's virtual_mailbox_maps.
std::string virtual_maps(doctor_state& d) {
    for (const auto& s : d.pf->services())
        if (s.command == "virtual")
            if (auto o = postfix::service_override(s, "virtual_mailbox_maps")) return *o;
    return d.pf->get("virtual_mailbox_maps").value_or("");
}

// Does virtual(8) find the connector's drop folder for an address of `domain`?
void check_delivery(doctor_state& d, const connector& c, const std::string& domain,
                    const std::string& maps) {
    std::string address = "mx-doctor@" + domain;
    for (const auto& item : postfix::split_list(maps)) {
        auto t = postfix::parse_table(item);
        if (!t) continue;
        bool by_pattern = t->type == "regexp" || t->type == "pcre";
        for (const auto& key : by_pattern ? std::vector<std::string>{address}
                                          : std::vector<std::string>{address, "@" + domain}) {
            auto l = d.pf->query(item, key, std::nullopt);  // virtual(8) opens tables as root
            if (!l.error.empty()) {
                d.r.fail("domains", "virtual(8) table " + item + " fails: " + l.error,
                         "check that mx-milter runs; it writes this table");
                return;
            }
            if (!l.value || l.value->empty()) continue;
            auto base = d.pf->get("virtual_mailbox_base").value_or("");
            auto got = (fs::path(base) / *l.value).lexically_normal();
            auto want = (fs::path(c.drop_folder) / "").lexically_normal();
            if (got == want)
                d.r.ok("domains", "virtual(8) delivers " + domain + " into " + c.drop_folder);
            else
                d.r.fail("domains",
                         "virtual(8) would deliver " + address + " into " + got.string() +
                             ", not connector " + c.name + "'s drop folder " + c.drop_folder,
                         "mxctl postfix setup -c " + d.opt.postfix_dir +
                             " (virtual_mailbox_base = / and mx-milter's tables)");
            return;
        }
    }
    d.r.fail("domains",
             "virtual(8) finds no drop folder for " + domain + " (virtual_mailbox_maps = " +
                 (maps.empty() ? std::string("empty") : maps) + "): mail would bounce",
             "mxctl postfix setup -c " + d.opt.postfix_dir + " (master.cf virtual service)");
}

}  // namespace

void check_domains(doctor_state& d) {
    if (!d.have_store || !d.pf) return;
    auto maps = virtual_maps(d);
    if (auto types = d.pf->map_types()) {
        bool ok = true;
        for (const char* param : {"virtual_mailbox_domains", "relay_domains", "mydestination"})
            ok &= check_types(d, param, d.pf->get(param).value_or(""), *types);
        ok &= check_types(d, "virtual_mailbox_maps", maps, *types);
        if (!ok) return;  // every lookup below would only repeat it
    }
    auto owner = d.pf->mail_owner();
    std::size_t checked = 0;
    for (const auto& c : d.connectors) {
        if (!c.active) continue;
        for (const auto& pattern : c.domains) {
            if (pattern == ".") {
                d.r.warn("domains",
                         "connector " + c.name +
                             " serves every domain ('.'): Postfix must accept any domain",
                         "make sure virtual_mailbox_domains uses mx-milter's socketmap");
                continue;
            }
            if (checked++ >= max_domains) break;
            auto domain = concrete_domain(pattern);
            check_domain(d, c, domain, owner);
            if (!c.drop_folder.empty()) check_delivery(d, c, domain, maps);
        }
    }
    if (checked == 0) d.r.ok("domains", "no active connector domain to check");
}

}  // namespace mx::admin::doctor
