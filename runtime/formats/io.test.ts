import { assertEquals } from "../../tests/util.ts";
import { baseName, dirName, joinPath, normalizePath } from "./io.ts";

Deno.test("path helpers", () => {
  assertEquals(joinPath("/a/", "/b", "", "c.bin"), "/a/b/c.bin");
  assertEquals(joinPath("/", "x"), "/x");
  assertEquals(normalizePath("/work/main/../shared/./models//s"), "/work/shared/models/s");
  assertEquals(normalizePath("/.."), "/");
  assertEquals(normalizePath("../a/../../b"), "../../b");
  assertEquals(normalizePath("a/.."), ".");
  assertEquals(baseName("/m/stories260K.bin"), "stories260K.bin");
  assertEquals(baseName("dir/"), "dir");
  assertEquals(dirName("/m/stories260K.bin"), "/m");
  assertEquals(dirName("x.bin"), ".");
  assertEquals(dirName("/x.bin"), "/");
});
