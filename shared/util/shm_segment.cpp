#include "util/shm_segment.hpp"

#include <cerrno>
#include <system_error>

#include <sys/stat.h>
#include <unistd.h>

#include <boost/interprocess/exceptions.hpp>

#include <fcntl.h>

namespace bip = boost::interprocess;

namespace mx::util {

shm_segment shm_segment::open_or_create(const std::string& name, std::size_t size, unsigned mode,
                                        std::optional<uid_t> owner_uid,
                                        std::optional<gid_t> owner_gid) {
    bip::permissions perm(mode);
    bip::shared_memory_object obj(bip::open_or_create, name.c_str(), bip::read_write, perm);
    bip::offset_t current = 0;
    obj.get_size(current);
    if (current < static_cast<bip::offset_t>(size)) obj.truncate(static_cast<bip::offset_t>(size));
    if ((owner_uid || owner_gid) && geteuid() == 0) {
        // Ownership matters only so the unprivileged daemon can open it read-write.
        const int fd = obj.get_mapping_handle().handle;
        if (::fchown(fd, owner_uid.value_or(-1), owner_gid.value_or(-1)) != 0 ||
            ::fchmod(fd, mode) != 0)
            throw std::system_error(errno, std::generic_category(), "fchown/fchmod " + name);
    }
    shm_segment seg;
    seg.name_ = name;
    seg.region_ = bip::mapped_region(obj, bip::read_write, 0, size);
    return seg;
}

std::optional<shm_segment> shm_segment::open_existing(const std::string& name, std::size_t size,
                                                      bool read_only) {
    try {
        auto m = read_only ? bip::read_only : bip::read_write;
        bip::shared_memory_object obj(bip::open_only, name.c_str(), m);
        bip::offset_t current = 0;
        obj.get_size(current);
        if (current < static_cast<bip::offset_t>(size)) return std::nullopt;
        shm_segment seg;
        seg.name_ = name;
        seg.region_ = bip::mapped_region(obj, m, 0, size);
        return seg;
    } catch (const bip::interprocess_exception&) {
        return std::nullopt;
    }
}

void shm_segment::remove(const std::string& name) noexcept {
    bip::shared_memory_object::remove(name.c_str());
}

}  // namespace mx::util
