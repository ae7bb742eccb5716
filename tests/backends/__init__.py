"""Store backends written against the public interface only, for tests."""
