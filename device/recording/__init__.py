"""Event clips: the pre-roll ring, MP4 remuxing, the clip folder, playback over WebRTC."""
