//! Temporary minimal graph (replaced by the full implementation).
pub struct Cycle(pub Vec<usize>);
pub struct Graph {
    req: Vec<Vec<usize>>,
    dep: Vec<Vec<usize>>,
    waves: Vec<Vec<usize>>,
    wave_of: Vec<usize>,
}
impl Graph {
    pub fn compile(requires: Vec<Vec<usize>>) -> Result<Graph, Vec<Cycle>> {
        let n = requires.len();
        let mut req: Vec<Vec<usize>> = requires;
        for r in &mut req {
            r.sort();
            r.dedup();
        }
        let mut dep = vec![Vec::new(); n];
        for (i, r) in req.iter().enumerate() {
            for &j in r {
                dep[j].push(i);
            }
        }
        let mut wave_of = vec![usize::MAX; n];
        let mut left: Vec<usize> = req.iter().map(|r| r.len()).collect();
        let mut cur: Vec<usize> = (0..n).filter(|&i| left[i] == 0).collect();
        let mut waves = Vec::new();
        let mut seen = 0;
        while !cur.is_empty() {
            let mut next = Vec::new();
            for &i in &cur {
                wave_of[i] = waves.len();
                seen += 1;
                for &d in &dep[i] {
                    left[d] -= 1;
                    if left[d] == 0 {
                        next.push(d);
                    }
                }
            }
            next.sort();
            waves.push(cur);
            cur = next;
        }
        if seen < n {
            return Err(vec![Cycle(
                (0..n).filter(|&i| wave_of[i] == usize::MAX).collect(),
            )]);
        }
        Ok(Graph {
            req,
            dep,
            waves,
            wave_of,
        })
    }
    pub fn len(&self) -> usize {
        self.req.len()
    }
    pub fn is_empty(&self) -> bool {
        self.req.is_empty()
    }
    pub fn requires(&self, i: usize) -> &[usize] {
        &self.req[i]
    }
    pub fn dependents(&self, i: usize) -> &[usize] {
        &self.dep[i]
    }
    pub fn waves(&self) -> &[Vec<usize>] {
        &self.waves
    }
    pub fn wave_of(&self, i: usize) -> usize {
        self.wave_of[i]
    }
    pub fn start_order(&self) -> Vec<usize> {
        self.waves.concat()
    }
    pub fn stop_order(&self) -> Vec<usize> {
        let mut v = self.start_order();
        v.reverse();
        v
    }
    pub fn transitive_dependents(&self, i: usize) -> Vec<usize> {
        self.closure(i, &self.dep)
    }
    pub fn transitive_requirements(&self, i: usize) -> Vec<usize> {
        self.closure(i, &self.req)
    }
    fn closure(&self, i: usize, e: &[Vec<usize>]) -> Vec<usize> {
        let mut seen = vec![false; self.len()];
        let mut st = vec![i];
        let mut out = Vec::new();
        while let Some(x) = st.pop() {
            for &y in &e[x] {
                if !seen[y] {
                    seen[y] = true;
                    out.push(y);
                    st.push(y);
                }
            }
        }
        out.sort_by_key(|&x| (self.wave_of[x], x));
        out
    }
}
