// postfix_conf: Postfix configuration syntax and MX Connector's wiring into it, as pure
// functions (no postconf, no root): list values, table specs, milter addresses, master.cf
// service lines, the settings our wiring needs, and where mx-milter serves its tables.
//
// Used by mxctl doctor (is Postfix wired to us?) and mxctl postfix setup (wire it), and unit
// tested on strings (tests/shared/test_postfix_conf.cpp).
// Promises: parsers never throw on odd input; they return nullopt / empty / "not ours".
// Security: values come from root-owned Postfix files or our own config; nothing here runs a
// program or touches a file.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "global/config.hpp"

namespace mx::postfix {

// A Postfix list value (commas and/or whitespace), keeping "{ ... }" groups whole.
std::vector<std::string> split_list(const std::string& v);

// "type:name" of a lookup table; nullopt for a literal, a /file/name, or "$parameter".
struct table_spec {
    std::string type;  // lmdb, hash, socketmap, regexp, ...
    std::string name;  // the rest ("unix:/run/x.sock:domain" for socketmap)
};
std::optional<table_spec> parse_table(const std::string& item);

// A milter socket as libmilter writes it (unix:PATH, local:PATH, inet:PORT@HOST).
struct milter_endpoint {
    bool is_unix = false;
    std::string path;  // unix
    std::string host;  // inet
    std::string port;
};
std::optional<milter_endpoint> parse_libmilter_spec(const std::string& spec);

// One entry of smtpd_milters (possibly "{ addr, default_action = accept }").
struct milter_entry {
    std::string address;
    std::string default_action;  // per-milter override, empty when none
};
milter_entry parse_milter_entry(const std::string& entry);

// Does the Postfix milter address designate `ours`? Relative unix paths are relative to
// queue_dir; with `chrooted` an absolute path is seen below queue_dir.
bool same_endpoint(const std::string& postfix_addr, const milter_endpoint& ours,
                   const std::string& queue_dir, bool chrooted);
// How Postfix names `ours` (inet:HOST:PORT; unix: relative when inside queue_dir).
std::string postfix_address(const milter_endpoint& ours, const std::string& queue_dir);
// Is a unix socket path inside the queue directory (visible to a chrooted smtpd)?
bool inside_queue_dir(const std::string& path, const std::string& queue_dir);

// One master.cf service as `postconf -M` prints it.
struct master_service {
    std::string name, type, priv, unpriv, chroot, wakeup, maxproc, command;
    std::vector<std::string> args;  // after the command, "-o name=value" kept as two words
    bool chrooted() const { return chroot == "y"; }
    std::string id() const { return name + "/" + type; }
};
// Parses `postconf -M` output (one service per line; continuation lines folded by postconf).
std::vector<master_service> parse_master(const std::string& postconf_m_output);
// The value of "-o NAME=VALUE" / "-o { NAME = VALUE }" in a service's arguments, if any.
std::optional<std::string> service_override(const master_service& s, const std::string& name);
// Where an inet smtpd service listens: ("host", "port") from its name (host:port, port or a
// service name such as smtp) and inet_interfaces; nullopt when it cannot be told.
std::optional<std::pair<std::string, std::string>> smtpd_listen(const master_service& s,
                                                                const std::string& interfaces);

// Where mx-milter serves Postfix: config::milter's socketmap, domain_table, drop_table and
// virtual_map (read once by load_config) in the form Postfix's wiring needs.
struct milter_tables {
    std::string socketmap;        // unix socket path; empty when disabled or not a unix socket
    std::string domain_table;     // lmdb: table name (Postfix appends .lmdb); empty: disabled
    std::string drop_table;       // lmdb: table for virtual(8)
    std::string virtual_map;      // regexp: table for virtual(8)
    std::string recipient_table;  // lmdb: access(5) table of table mode; empty: off
};
milter_tables milter_tables_of(const config& cfg);

// ---- our wiring -------------------------------------------------------------------------

// What `mxctl postfix setup` applies. main.cf settings in order; `master` is the virtual
// service line and its override, `chroot_off` the smtpd services to take out of the chroot.
struct wiring {
    std::vector<std::pair<std::string, std::string>> main;
    std::string virtual_service;  // "virtual unix - n n - - virtual"
    std::string virtual_maps;     // value of -o virtual_mailbox_maps for that service
};

// The values as they are now (explicitly set ones: `postconf -n`; nullopt = not set).
struct current_main {
    std::optional<std::string> virtual_mailbox_domains, virtual_mailbox_maps, smtpd_milters,
        non_smtpd_milters, smtpd_relay_restrictions, smtpd_recipient_restrictions;
    std::string queue_directory = "/var/spool/postfix";
    // Effective value (`postconf -h`, default included): table mode takes smtpd_access_maps out.
    std::string parent_domain_matches_subdomains =
        "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,"
        "qmqpd_authorized_clients,relay_domains,smtpd_access_maps";
};

// Table mode's entry in smtpd_recipient_restrictions ("check_recipient_access lmdb:TABLE").
std::string recipient_access_entry(const milter_tables& t);
// `list` without that entry (the two words), keeping everything else in order.
std::string restrictions_without(const std::string& list, const std::string& entry);

// Our settings merged into what is there: lists keep the admin's other entries (our entries
// added once), smtpd_relay_restrictions is touched only when it lacks an *_unauth_destination
// rule. Throws std::invalid_argument when the existing wiring conflicts (another
// virtual_mailbox_maps that we would have to empty).
// With [milter] recipient_table set, table mode (docs/postfix.md): our milter leaves
// smtpd_milters, smtpd_recipient_restrictions gets the access check (appended to the admin's
// rules), recipient_delimiter = subaddress_delimiter, and parent_domain_matches_subdomains
// loses smtpd_access_maps.
wiring plan_wiring(const config& cfg, const current_main& now, unsigned uid, unsigned gid);

// Adds `item` to a Postfix list unless an entry equal to it is there ("a, b" style).
std::string list_with(const std::string& list, const std::string& item);
// Removes entries equal to `item`.
std::string list_without(const std::string& list, const std::string& item);

}  // namespace mx::postfix
