"""The gangway_kv Python module: a prompt's life, prefix hits, fork, swap, copies, stats, errors."""
import unittest

import gangway_kv as kv


class ModuleTest(unittest.TestCase):
    def make(self, **kw):
        args = dict(num_blocks=8, block_size=4, num_host_blocks=4, watermark=0.0)
        args.update(kw)
        return kv.KvCacheManager(**args)

    def test_prompt_life_and_prefix_hit(self):
        m = self.make()
        r = m.allocate(1, list(range(10)))
        self.assertEqual((r.cached_tokens, r.new_blocks), (0, 3))
        self.assertEqual(len(m.block_table(1)), 3)
        m.append(1, [10])  # marks the prompt computed
        self.assertEqual(m.num_tokens(1), 11)
        r2 = m.allocate(2, list(range(10)))
        self.assertEqual(r2.cached_tokens, 8)
        self.assertEqual(m.block_table(2)[:2], m.block_table(1)[:2])
        slots = m.slot_mapping(1, 8, 3)
        b = m.block_table(1)[2]
        self.assertEqual(slots, [b * 4, b * 4 + 1, b * 4 + 2])
        self.assertIn(1, m)
        m.free(1)
        self.assertNotIn(1, m)
        s = m.stats()
        self.assertEqual(s["hit_blocks"], 2)
        self.assertEqual(s["used_blocks"] + s["free_blocks"], 8)

    def test_extra_keys_separate_adapters(self):
        m = self.make()
        m.allocate(1, list(range(9)), extra_keys=[(0, 7)])
        m.set_computed(1, 9)
        self.assertEqual(m.can_admit(list(range(9))).cached_tokens, 0)
        self.assertEqual(m.can_admit(list(range(9)), extra_keys=[(0, 7)]).cached_tokens, 8)

    def test_fork_copy_on_write_and_swap(self):
        m = self.make()
        m.allocate(1, [1, 2, 3, 4, 5, 6])
        m.fork(1, 2)
        m.append(2, [9])
        copies = m.take_copies()
        self.assertEqual(len(copies), 1)
        self.assertEqual(copies[0][0], "device_to_device")
        m.swap_out(1)
        self.assertTrue(all(c[0] == "device_to_host" for c in m.take_copies()))
        self.assertTrue(m.can_swap_in(1))
        m.swap_in(1)
        self.assertEqual(m.take_copies()[0][0], "host_to_device")

    def test_errors_are_typed_and_change_nothing(self):
        with self.assertRaisesRegex(kv.InvalidArgument, "block_size 3 does not divide 512"):
            kv.KvCacheManager(num_blocks=8, block_size=3)
        m = self.make()
        m.allocate(1, list(range(16)))
        before = m.stats()
        with self.assertRaises(kv.OutOfBlocks) as e:
            m.allocate(2, list(range(20)))
        self.assertIsInstance(e.exception, MemoryError)
        self.assertIsInstance(e.exception, kv.KvError)
        with self.assertRaises(kv.InvalidArgument):
            m.allocate(2, list(range(40)))  # larger than the pool
        with self.assertRaises(kv.SequenceExists):
            m.allocate(1, [1])
        m.free(1)
        with self.assertRaises(kv.SequenceNotFound):
            m.free(1)
        with self.assertRaises(kv.SequenceNotFound):
            m.append(1, [1])
        with self.assertRaises(kv.OutOfRange):
            m.allocate(3, [1, 2])
            m.slot_mapping(3, 1, 5)
        self.assertEqual(m.stats()["allocated_blocks"], before["allocated_blocks"] + 1)


if __name__ == "__main__":
    unittest.main()
