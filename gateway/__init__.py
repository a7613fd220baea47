"""The gateway: auth, playback sessions, tokenized playlists, ads and the segment proxy."""
