//! What the kernel object's maps cost in kernel memory.

use aya::maps::{Map, MapType};
use aya::Ebpf;

use super::TracerError;

/// What the kernel allocates for the maps as defined by the loaded object (sizes read back from
/// the kernel): a ring's data area plus its two control pages; an array's values, 8-byte aligned;
/// a per-CPU array's values once per possible CPU.
pub(super) fn kernel_memory(ebpf: &Ebpf) -> Result<u64, TracerError> {
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)? as u64;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let mut total = 0;
    for (name, map) in ebpf.maps() {
        let data = match map {
            Map::Array(data) | Map::PerCpuArray(data) | Map::RingBuf(data) => data,
            _ => unreachable!("map {name} of a kind the kernel object does not define"),
        };
        let info = data.info()?;
        let entries = info.max_entries() as u64;
        let value = (info.value_size() as u64).div_ceil(8) * 8;
        total += match info.map_type()? {
            MapType::RingBuf => entries + 2 * page,
            MapType::PerCpuArray => entries * value * cpus,
            _ => entries * value,
        };
    }
    Ok(total)
}
