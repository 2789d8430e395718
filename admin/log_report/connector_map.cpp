// connector_map loader: the only place log-report touches the LMDB store (see connector_map.hpp).
// Opened read-only and never created: a report must work on a machine that only has the logs.
#include <filesystem>
#include <stdexcept>

#include "../mxctl.hpp"
#include "connector_map.hpp"

namespace mx::logreport {

connector_map load_connector_map(admin::mxctl_context& ctx, std::string& why_not) {
    connector_map map;
    try {
        const auto dir = ctx.cfg().store_dir();
        if (!std::filesystem::exists(dir / "data.mdb")) {
            why_not = "no store at " + dir.string();
            return map;
        }
        auto st = store::open(dir, true);
        auto view = st.read();
        for (const auto& [pattern, connector] : view.domains()) map.add(pattern, connector);
    } catch (const std::exception& e) {
        why_not = e.what();
    }
    return map;
}

}  // namespace mx::logreport
