// connector_map loader: the only place log-report touches the LMDB store (see connector_map.hpp).
// Opened read-only and never created: a report must work on a machine that only has the logs.
// Run as root with `user` set, the store is read in a child that has become the daemon account
// (util::run_as): LMDB opens its lock file read-write by path in a folder that account owns,
// while the report itself may still need root to read the mail logs.
#include <filesystem>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "../mxctl.hpp"
#include "connector_map.hpp"

namespace mx::logreport {
namespace {

// [[pattern, connector], ...] of the store's domains; "" when there is no store.
std::string read_domains(const std::filesystem::path& dir) {
    if (!std::filesystem::exists(dir / "data.mdb")) return "";
    auto st = store::open(dir, true);
    auto view = st.read();
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [pattern, connector] : view.domains()) out.push_back({pattern, connector});
    return out.dump();
}

}  // namespace

connector_map load_connector_map(admin::mxctl_context& ctx, std::string& why_not) {
    connector_map map;
    try {
        const auto dir = ctx.cfg().store_dir();
        std::string text = ctx.read_as_state_owner([&] { return read_domains(dir); });
        if (text.empty()) {
            why_not = "no store at " + dir.string();
            return map;
        }
        for (const auto& p : nlohmann::json::parse(text))
            map.add(p.at(0).get<std::string>(), p.at(1).get<std::string>());
    } catch (const std::exception& e) {
        why_not = e.what();
    }
    return map;
}

}  // namespace mx::logreport
