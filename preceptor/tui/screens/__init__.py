"""The app's screens (one per mode): dashboard, judge, data, train, results, export."""
