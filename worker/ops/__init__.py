"""The ops side: webhook delivery, the sweeper and retention. Never imports torch, cv2 or numpy."""
