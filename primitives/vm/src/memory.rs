//! Byte-addressed Memory that only grows, like the EVM's: the never-free baseline the Buffer is
//! measured against. Growth is charged per 32-byte word and bounded by a limit.

use alloc::vec::Vec;

use crate::error::ErrorKind;
use crate::gas::{Meter, Schedule};

/// The Memory of one execution.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    pub(crate) bytes: Vec<u8>,
    limit: u64,
}

impl Memory {
    /// Empty Memory that may grow to `limit` bytes.
    pub fn new(limit: u32) -> Memory {
        Memory {
            bytes: Vec::new(),
            limit: limit as u64,
        }
    }

    /// Memory holding `bytes` (a snapshot's), within `limit`.
    pub(crate) fn restore(limit: u32, bytes: Vec<u8>) -> Result<Memory, ErrorKind> {
        if bytes.len() as u64 > limit as u64 {
            return Err(ErrorKind::MemoryLimit);
        }
        Ok(Memory {
            bytes,
            limit: limit as u64,
        })
    }

    /// Makes `[offset, offset + len)` addressable, charging for growth; returns the range.
    #[inline]
    pub fn ensure(
        &mut self,
        offset: i64,
        len: i64,
        meter: &mut Meter,
        schedule: &Schedule,
    ) -> Result<core::ops::Range<usize>, ErrorKind> {
        if offset < 0 || len < 0 {
            return Err(ErrorKind::BadOperand);
        }
        let end = (offset as u64)
            .checked_add(len as u64)
            .ok_or(ErrorKind::MemoryLimit)?;
        if end > self.bytes.len() as u64 {
            if end > self.limit {
                return Err(ErrorKind::MemoryLimit);
            }
            let words = end.div_ceil(32) - (self.bytes.len() as u64).div_ceil(32);
            meter.charge(schedule.memory_growth(words))?;
            self.bytes
                .resize((end.div_ceil(32) * 32).min(self.limit) as usize, 0);
        }
        Ok(offset as usize..end as usize)
    }

    /// Reads `N` bytes at `addr`; the common in-bounds case is a single check.
    #[inline(always)]
    pub fn load<const N: usize>(
        &mut self,
        addr: i64,
        meter: &mut Meter,
        schedule: &Schedule,
    ) -> Result<[u8; N], ErrorKind> {
        if let Some(bytes) = usize::try_from(addr)
            .ok()
            .and_then(|a| self.bytes.get(a..a.checked_add(N)?))
        {
            return bytes.try_into().map_err(|_| ErrorKind::BadOperand);
        }
        let r = self.ensure(addr, N as i64, meter, schedule)?;
        self.bytes[r].try_into().map_err(|_| ErrorKind::BadOperand)
    }

    /// Writes `N` bytes at `addr`, growing Memory if needed.
    #[inline(always)]
    pub fn store<const N: usize>(
        &mut self,
        addr: i64,
        value: [u8; N],
        meter: &mut Meter,
        schedule: &Schedule,
    ) -> Result<(), ErrorKind> {
        if let Some(bytes) = usize::try_from(addr)
            .ok()
            .and_then(|a| self.bytes.get_mut(a..a.checked_add(N)?))
        {
            bytes.copy_from_slice(&value);
            return Ok(());
        }
        let r = self.ensure(addr, N as i64, meter, schedule)?;
        self.bytes[r].copy_from_slice(&value);
        Ok(())
    }

    /// Bytes in use (the peak: Memory never shrinks).
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
}
