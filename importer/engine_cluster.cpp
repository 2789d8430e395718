// engine_cluster: the batch steps of cluster mode ([cluster] in the config; without it each
// function returns at once and PostgreSQL is never touched).
//   1  adopt_orphans: files in <drop>/.work/<node>/ of a node whose lease ended are moved into
//      our own work folder (one rename each; exactly one live host wins a file)
//   3b cluster_reserve: every planned delivery is reserved in mxc.imports before the local
//      journal's pending record; imported elsewhere -> duplicate; pending by a live node ->
//      wait; pending by a gone node -> ours, after asking the target whether that node's
//      planned delivery happened; PostgreSQL unreachable -> nothing of the batch is delivered
//   7b cluster_finish: imported / failed marks after the local final records and before the
//      finished files are unlinked (a crash in between: the restart finds the file, the local
//      journal says imported, and the mark is written again)
// Security: the shared drop folder may be a network filesystem written by other accounts:
// folders are opened with O_DIRECTORY|O_NOFOLLOW and files moved with renameat2 relative to
// them (never through a path that could be swapped for a symlink).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>  // renameat2
#include <cstring>

#include <pqxx/pqxx>

#include "cluster_link.hpp"
#include "engine_item.hpp"
#include "util/socket_io.hpp"

namespace mx::importer {
namespace {

// A node name from the database as a folder name: what cluster_of() accepts, nothing else.
bool plain_node_name(const std::string& n) {
    if (n.empty() || n.size() > 63 || n[0] == '.' || n[0] == '-' || n[0] == '_') return false;
    return std::all_of(n.begin(), n.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    });
}

util::unique_fd open_dir_at(int at, const char* name) {
    return util::unique_fd(::openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

// Moves `name` from one folder to another without replacing anything: 0 or an errno.
int move_noreplace(int from, const std::string& name, int to, const std::string& to_name) {
    if (::renameat2(from, name.c_str(), to, to_name.c_str(), RENAME_NOREPLACE) == 0) return 0;
    int e = errno;
    if (e != EINVAL && e != ENOSYS) return e;
    // No RENAME_NOREPLACE here (some network filesystems): link + unlink, as for claims.
    if (::linkat(from, name.c_str(), to, to_name.c_str(), 0) != 0) return errno;
    if (::unlinkat(from, name.c_str(), 0) != 0) {
        e = errno;
        ::unlinkat(to, to_name.c_str(), 0);
        return e;
    }
    return 0;
}

using rcpt = engine::item::rcpt;

void settle_duplicate(rcpt& r, const std::string& detail, std::string location) {
    r.to_deliver = false;
    r.target = nullptr;
    r.settled = true;
    r.res = {result_kind::imported, "2.0.0", detail, std::move(location)};
}

}  // namespace

void engine::adopt_orphans(batch& b) {
    if (!cluster_) return;
    auto dead = cluster_->dead_nodes();  // empty unless our own lease is fresh
    if (dead.empty() || b.items.size() >= b.budget) return;
    auto base = util::unique_fd(
        ::open((b.f->drop / ".work").c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (base.get() < 0) return;
    auto own = open_dir_at(base.get(), s_.host.c_str());
    if (own.get() < 0) return;
    std::size_t room = b.budget - b.items.size(), moved = 0;
    for (const auto& node : dead) {
        if (node == s_.host || !plain_node_name(node)) continue;
        auto from = open_dir_at(base.get(), node.c_str());
        if (from.get() < 0) continue;  // no claims of that node in this folder
        DIR* d = ::fdopendir(::dup(from.get()));
        if (!d) continue;
        while (moved < room) {
            auto* e = ::readdir(d);
            if (!e) break;
            std::string n = e->d_name;
            // Dot files are temporaries of that node (a private copy in the making).
            if (n[0] == '.' ||
                (e->d_type != DT_REG && e->d_type != DT_LNK && e->d_type != DT_UNKNOWN))
                continue;
            std::string to = n;
            int rc = move_noreplace(from.get(), n, own.get(), to);
            if (rc == EEXIST) {  // the same name claimed here too: both stay
                to = bounded_name(n + "." + short_hash(node + "/" + n), 253);
                rc = move_noreplace(from.get(), n, own.get(), to);
            }
            if (rc == 0) {
                ++moved;
                spdlog::info("connector {}: took over {} from node {} (lease ended)",
                             b.f->connector, log_safe(n), node);
            } else if (rc != ENOENT) {  // ENOENT: another host took it first
                spdlog::warn("connector {}: cannot take over {} from node {}: {}", b.f->connector,
                             log_safe(n), node, std::strerror(rc));
            }
        }
        ::closedir(d);
    }
}

void engine::cluster_reserve(batch& b) {
    if (!cluster_ || !b.any_planned) return;
    struct ref {
        item* it;
        std::size_t i;
    };
    std::vector<ref> refs;
    for (auto& it : b.items)
        for (std::size_t i = 0; i < it->rcpts.size(); ++i) {
            const auto& r = it->rcpts[i];
            if (r.to_deliver && r.target && !r.planned.empty()) refs.push_back({it.get(), i});
        }
    // One order for every host: two hosts reserving overlapping rows never deadlock.
    auto key_of = [](const ref& x) {
        return std::pair(x.it->pr.fingerprint, x.it->rcpts[x.i].key);
    };
    std::sort(refs.begin(), refs.end(),
              [&](const ref& x, const ref& y) { return key_of(x) < key_of(y); });
    std::vector<cluster::reserve_request> rq;
    for (const auto& x : refs) {
        const auto& r = x.it->rcpts[x.i];
        rq.push_back({x.it->pr.fingerprint, r.key, b.f->connector, r.spec, r.planned});
    }
    std::vector<cluster::reservation> got;
    try {
        got = cluster_->reserve(rq);
    } catch (const std::exception& e) {
        // Nothing is delivered that is not reserved: the files wait for a retry.
        spdlog::error("connector {}: cluster journal not reachable ({}); {} deliveries wait",
                      b.f->connector, e.what(), refs.size());
        for (const auto& x : refs) {
            auto& r = x.it->rcpts[x.i];
            r.to_deliver = false;
            r.target = nullptr;
            r.res = {result_kind::temporary, "4.3.0", "cluster journal not reachable", {}};
        }
        return;
    }
    for (std::size_t k = 0; k < refs.size(); ++k) {
        auto& it = *refs[k].it;
        auto& r = it.rcpts[refs[k].i];
        const auto& g = got[k];
        switch (g.what) {
            case cluster::reserve_outcome::imported:
                settle_duplicate(r, "duplicate (imported by node " + g.node + ")", g.location);
                ++b.bs.duplicates;
                break;
            case cluster::reserve_outcome::busy: {
                // Another live node holds it; if its delivery is already there, it is done.
                bool there = false;
                try {
                    there = !g.location.empty() && targets_.get(g.target).delivered(g.location);
                } catch (const std::exception&) {
                }
                if (there) {
                    settle_duplicate(r, "duplicate (delivered by node " + g.node + ")", {});
                    ++b.bs.duplicates;
                    break;
                }
                r.to_deliver = false;
                r.target = nullptr;
                r.res = {result_kind::temporary, "4.3.0", "being imported by node " + g.node, {}};
                r.res.retry_after = cluster_->lease();
                break;
            }
            case cluster::reserve_outcome::taken_over:
            case cluster::reserve_outcome::reserved: {
                if (g.location.empty() || g.location == r.planned || g.target.empty()) break;
                // An earlier holder planned another location: did that delivery happen?
                nlohmann::json rec = {{"target", g.target}, {"location", g.location}};
                std::string mailbox = r.mailbox;
                if (recover_pending(it, refs[k].i, rec)) {
                    r.mailbox = mailbox;
                    r.to_deliver = false;
                    r.res.detail = "recovered (delivered by node " + g.node + ")";
                }
                if (g.what == cluster::reserve_outcome::taken_over)
                    spdlog::info("connector {}: took over {} <{}> from node {}: {}", b.f->connector,
                                 log_safe(it.name), log_safe(r.key), g.node,
                                 r.to_deliver ? "delivering" : "it was delivered");
                break;
            }
            case cluster::reserve_outcome::retaken:
                break;
        }
    }
}

void engine::cluster_finish(std::vector<item*>& items) {
    if (!cluster_) return;
    std::vector<cluster::final_mark> ms;
    for (auto* it : items) {
        if (it->vanished || it->pr.fingerprint.empty()) continue;
        const bool any_temp = it->any_temporary();
        for (const auto& r : it->rcpts) {
            if (r.key.empty()) continue;
            // A duplicate the local journal found ("duplicate": imported by this host) is
            // marked again: the process may have died between its final record and the mark
            // (idempotent). Duplicates found in PostgreSQL are marked there already.
            if (r.settled && !(r.res.kind == result_kind::imported && r.res.detail == "duplicate"))
                continue;
            cluster::final_mark m{it->pr.fingerprint, r.key,          false, r.spec,
                                  r.planned,          r.res.location, {},    r.res.status};
            if (r.res.kind == result_kind::imported) {
                m.imported = true;
            } else if (r.res.kind == result_kind::permanent && !any_temp &&
                       !it->failed_path.empty()) {
                m.failed_path = it->failed_path;
            } else {
                continue;  // still to do (pending stays ours) or held
            }
            ms.push_back(std::move(m));
        }
    }
    cluster_->mark(std::move(ms));
}

}  // namespace mx::importer
