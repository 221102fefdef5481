//! Helpers shared by the kernel tests.

/// A small deterministic generator (the tests' edge-case grids are reproducible by seed).
pub struct Lcg(pub u32);

#[allow(dead_code)] // each test file uses some of these
impl Lcg {
    pub fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.0 >> 8
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.next() as usize % n
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }
    pub fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| (self.next() >> 16) as u8 as i8).collect()
    }
    pub fn f32s(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| (self.next() as f32 / (1 << 24) as f32 - 0.5) * 4.0)
            .collect()
    }
}
