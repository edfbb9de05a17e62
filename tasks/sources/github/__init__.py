"""The GitHub bot: webhook app, state, the GitHub client."""
