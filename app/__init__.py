"""prescale: predict container failures and add resources before they happen."""
