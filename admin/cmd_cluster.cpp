// mxctl cluster init|status|nodes, and the global --no-wait (docs/cluster.md).
//
// init: creates the schema and seeds the catalog and the secrets (encrypted with the cluster
// key; refused without the key when this host has secrets) from this host's stores (refuses
// when PostgreSQL already has a catalog, unless --force). status: this replica against the primary
// (exit 0 connected, 3 PostgreSQL unreachable: the figures are then the replica's last
// contact). nodes: every host's heartbeat.
// Security: the conninfo is printed redacted only.
#include <pqxx/pqxx>

#include <chrono>
#include <iostream>

#include "global/cluster.hpp"
#include "global/cluster_catalog.hpp"
#include "global/cluster_db.hpp"
#include "global/cluster_secrets.hpp"
#include "mxctl.hpp"

namespace mx::admin {
namespace {

cluster::cluster_config need_cluster(mxctl_context& ctx) {
    auto c = cluster::cluster_of(ctx.cfg());
    if (!c)
        throw cli_error(ctx.cfg().file.string() +
                        " has no [cluster] section (single host): add postgresql and node "
                        "(docs/cluster.md)");
    return *c;
}

// libpq's messages span lines ("...failed: ...\n\tIs the server running..."): one line.
std::string trimmed(std::string s) {
    for (auto& ch : s)
        if (ch == '\n' || ch == '\t') ch = ' ';
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
}

std::unique_ptr<pqxx::connection> connect_or_fail(const cluster::cluster_config& c) {
    try {
        return cluster::connect(c, "mxctl");
    } catch (const std::exception& e) {
        throw cli_error("cluster: PostgreSQL is not reachable (" +
                        cluster::redact_conninfo(c.postgresql) + "): " + trimmed(e.what()));
    }
}

std::int64_t now_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

void cluster_init(mxctl_context& ctx, bool force) {
    auto c = need_cluster(ctx);
    auto conn = connect_or_fail(c);
    auto& local = ctx.open_store();
    pqxx::work w(*conn);
    cluster::create_schema(w);
    if (auto old = cluster::read_position(w); old && !force)
        throw cli_error("PostgreSQL already has a catalog (generation " +
                        std::to_string(old->generation) +
                        "): this host follows it by itself; `--force` replaces it with this "
                        "host's store");
    cluster::catalog_position p;
    std::size_t boxes = 0;
    {
        auto v = local.read();
        boxes = v.mailbox_count();
        p = cluster::seed_catalog(w, v);
    }
    // The secrets go along, encrypted: every host with the key makes its secret store equal to
    // PostgreSQL's, so a catalog seeded without them would erase them everywhere.
    auto& secrets = ctx.secrets();
    const auto names = secrets.names();
    if (!names.empty() && !cluster::load_key(c.key_file))
        throw cli_error("this host has " + std::to_string(names.size()) +
                        " secret(s) (SMTP passwords, OAuth credentials) and no cluster key at " +
                        c.key_file.string() + ": create it first (e.g. `openssl rand -hex 32 > " +
                        c.key_file.string() +
                        "`, mode 0600, owned by the daemon account), then run init again");
    cluster::remove_secret_prefix(w, "");  // --force: the catalog and its secrets both replaced
    for (const auto& n : names)
        if (auto v = secrets.get(n)) cluster::put_secret(w, c, n, *v);
    w.commit();
    local.write([&](store_tx& tx) { cluster::set_local_position(tx, p); });
    std::cout << "cluster catalog created from this host's store (" << boxes
              << " mailbox(es)), generation " << p.generation << "\n";
}

nlohmann::json status_json(mxctl_context& ctx, const cluster::cluster_config& c, bool& connected) {
    nlohmann::json j;
    j["node"] = c.node;
    j["postgresql"] = cluster::redact_conninfo(c.postgresql);
    cluster::local_position here;
    try {
        auto v = ctx.open_store_read_only().read();
        here = cluster::local_position_of(v);
    } catch (const std::exception& e) {
        j["local_error"] = e.what();
    }
    j["catalog_id"] = here.catalog_id;
    j["local_generation"] = here.generation;
    j["local_applied"] = ops::when(here.applied_ms / 1000);
    std::uint64_t contact = 0, seen = 0;
    if (auto* s = ctx.shm()) {
        contact = s->layout().cluster_contact_ms.load();
        seen = s->layout().cluster_primary_generation.load();
    }
    j["last_contact"] = ops::when(static_cast<std::int64_t>(contact / 1000));
    j["staleness_ms"] = contact ? nlohmann::json(now_ms() - static_cast<std::int64_t>(contact))
                                : nlohmann::json(nullptr);
    j["max_staleness_s"] = c.max_staleness.count();
    connected = false;
    try {
        auto conn = cluster::connect(c, "mxctl");
        pqxx::read_transaction t(*conn);
        auto p = cluster::read_position(t);
        if (!p) throw std::runtime_error("the cluster has no catalog yet (mxctl cluster init)");
        connected = true;
        j["connected"] = true;
        j["primary_generation"] = p->generation;
        j["lag_ms"] = here.catalog_id == p->catalog_id ? cluster::lag_ms(t, here.generation)
                                                       : cluster::lag_ms(t, 0);
        nlohmann::json nodes = nlohmann::json::array();
        for (auto& n : cluster::list_nodes(t))
            nodes.push_back({{"node", n.node},
                             {"last_heartbeat", n.last_heartbeat},
                             {"heartbeat_age_ms", n.heartbeat_age_ms},
                             {"applied_generation", n.applied_generation},
                             {"version", n.version},
                             {"roles", n.roles}});
        j["nodes"] = nodes;
    } catch (const std::exception& e) {
        j["connected"] = false;
        j["error"] = trimmed(e.what());
        // As of the replica's last contact; the lag itself is unknown.
        j["primary_generation"] = seen;
        j["lag_ms"] = nullptr;
        j["nodes"] = nlohmann::json::array();
    }
    return j;
}

std::string show(const nlohmann::json& v) {
    if (v.is_null()) return "-";
    return v.is_string() ? v.get<std::string>() : v.dump();
}

void cluster_status(mxctl_context& ctx, bool json) {
    auto c = need_cluster(ctx);
    bool connected = false;
    auto j = status_json(ctx, c, connected);
    if (json) {
        print_json(j);
    } else {
        std::vector<std::vector<std::string>> rows{
            {"node:", show(j["node"])},
            {"postgresql:",
             show(j["postgresql"]) +
                 (connected ? " (connected)"
                            : " (NOT reachable: " + show(j.value("error", "")) + ")")},
            {"local_generation:", show(j["local_generation"])},
            {"primary_generation:",
             show(j["primary_generation"]) + (connected ? "" : " (as of the last contact)")},
            {"lag_ms:", show(j["lag_ms"])},
            {"last_contact:",
             show(j["last_contact"]) + " (staleness " + show(j["staleness_ms"]) + " ms)"}};
        print_table(rows);
        if (connected) {
            std::cout << "\n";
            std::vector<std::vector<std::string>> n{
                {"NODE", "LAST HEARTBEAT", "AGE MS", "APPLIED", "ROLES"}};
            for (auto& x : j["nodes"])
                n.push_back({show(x["node"]), show(x["last_heartbeat"]),
                             show(x["heartbeat_age_ms"]), show(x["applied_generation"]),
                             show(x["roles"])});
            print_table(n);
        }
    }
    if (!connected) ctx.exit_code = 3;
}

void cluster_nodes(mxctl_context& ctx, bool json) {
    auto c = need_cluster(ctx);
    auto conn = connect_or_fail(c);
    pqxx::read_transaction t(*conn);
    if (!cluster::read_position(t))
        throw cli_error("the cluster has no catalog yet (mxctl cluster init)");
    auto nodes = cluster::list_nodes(t);
    if (json) {
        nlohmann::json a = nlohmann::json::array();
        for (auto& n : nodes)
            a.push_back({{"node", n.node},
                         {"last_heartbeat", n.last_heartbeat},
                         {"heartbeat_age_ms", n.heartbeat_age_ms},
                         {"applied_generation", n.applied_generation},
                         {"version", n.version},
                         {"roles", n.roles}});
        print_json(a);
        return;
    }
    std::vector<std::vector<std::string>> rows{
        {"NODE", "LAST HEARTBEAT", "AGE MS", "APPLIED", "VERSION", "ROLES"}};
    for (auto& n : nodes)
        rows.push_back({n.node, n.last_heartbeat, std::to_string(n.heartbeat_age_ms),
                        std::to_string(n.applied_generation), n.version, n.roles});
    print_table(rows);
}

}  // namespace

void add_cluster_commands(CLI::App& app, mxctl_context& ctx) {
    app.add_flag("--no-wait", ctx.no_wait_flag,
                 "cluster mode: return once PostgreSQL has a change, without applying it to "
                 "this host's replica first (its mx-replica does, moments later)");
    auto* cmd = app.add_subcommand("cluster", "several hosts on PostgreSQL (docs/cluster.md)");
    cmd->require_subcommand(1);
    auto force = std::make_shared<bool>(false);
    auto* init = cmd->add_subcommand(
        "init", "create the schema and seed the catalog from this host's store");
    init->add_flag("--force", *force, "replace a catalog PostgreSQL already has");
    init->callback([&ctx, force] { cluster_init(ctx, *force); });
    auto json = std::make_shared<bool>(false);
    auto* status = cmd->add_subcommand(
        "status", "this host's replica against the primary (exit 3: PostgreSQL unreachable)");
    status->add_flag("--json", *json, "JSON output");
    status->callback([&ctx, json] { cluster_status(ctx, *json); });
    auto json2 = std::make_shared<bool>(false);
    auto* nodes = cmd->add_subcommand("nodes", "every host with its last heartbeat");
    nodes->add_flag("--json", *json2, "JSON output");
    nodes->callback([&ctx, json2] { cluster_nodes(ctx, *json2); });
}

}  // namespace mx::admin
