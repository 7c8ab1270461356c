"""The download queue: the engine, one attempt's job, outcomes, temp files, the yt-dlp bridge and the snapshot."""
