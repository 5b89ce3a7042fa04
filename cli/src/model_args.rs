//! The options that choose the kernel model, shared by `analyze` and `batch`.

use nmitrace_analyses::Config;

#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Kernel release to model (e.g. 2.6.35, 5.8, 6.18.44-1-default). Default: from the trace, else a current kernel.
    #[arg(long, value_name = "VERSION", value_parser = kernel_version)]
    pub kernel: Option<String>,
    /// Architecture / page-directory model.
    #[arg(long, value_name = "ARCH", value_parser = ["x86_64", "x86_64-5level", "x86_32", "x86_32-pae"])]
    pub arch: Option<String>,
    /// Two NMIs on one CPU this close (end to start, ns) are back-to-back.
    #[arg(long, value_name = "NS", default_value_t = nmitrace_analyses::DEFAULT_B2B_THRESHOLD_NS)]
    pub b2b_threshold_ns: u64,
}

fn kernel_version(s: &str) -> Result<String, String> {
    nmitrace_replay::kernel_model::check_kernel(s)?;
    Ok(s.to_string())
}

impl ModelArgs {
    pub fn config(&self) -> Config {
        Config {
            kernel: self.kernel.clone(),
            arch: self.arch.clone(),
            b2b_threshold_ns: self.b2b_threshold_ns,
        }
    }
}
