//! Writing trace.dat files (v7 zstd/none, v6 on request).

/// Options for [`TraceDatWriter`].
#[derive(Clone, Debug, Default)]
pub struct WriterOptions {}

pub struct TraceDatWriter {}
