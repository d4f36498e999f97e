//! `ironic-agent write-image`: the pipeline from the command line.
//! SKELETON: filled in by the image-pipeline work.

#[derive(Debug, clap::Args)]
pub struct WriteImageArgs {
    /// Image URL (http or https).
    pub url: String,
    /// Target block device or regular file.
    pub device: std::path::PathBuf,
}

impl WriteImageArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("write-image of {} is not built yet", self.url)
    }
}
