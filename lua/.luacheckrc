-- luacheck configuration for the assembled scripts (`authsession scripts export DIR`):
-- Redis runs Lua 5.1 and gives scripts these globals; everything else must be a local.
std = "lua51"
read_globals = {"redis", "cjson", "cmsgpack", "bit", "struct", "KEYS", "ARGV"}
max_line_length = 120
-- The shape the generated prologue learns (`SHAPE_*`): a script reads only what it needs.
ignore = {"231/SHAPE_.*"}
