"""The layout a maintainer relies on: no import circles inside emo_mm, tools
that are short scripts importing only the library, and no edits of the
interpreter's module search path anywhere."""
import ast
import glob
import os.path as osp

from conftest import REPO_ROOT

PACKAGE = osp.join(REPO_ROOT, 'emo_mm')


def module_name(path):
    rel = osp.relpath(path, REPO_ROOT)[:-len('.py')].replace(osp.sep, '.')
    return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def imported_modules(path, modules):
    """The emo_mm modules that ``path`` names in an import statement, at
    any depth (imports inside functions count too)."""
    name = module_name(path)
    package = name if path.endswith('__init__.py') else name.rsplit('.', 1)[0]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                source = '.'.join(base +
                                  ([node.module] if node.module else []))
            else:
                source = node.module
            found.add(source)
            # `from package import submodule` imports that module too.
            found.update(f'{source}.{alias.name}' for alias in node.names)
    return {m for m in found if m in modules and m != name}


def find_cycle(graph):
    """A list of modules that import each other in a circle, or None."""
    state = {}

    def visit(node, stack):
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 'open':
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, stack)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 'done'
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


def test_no_import_circles_in_emo_mm():
    paths = glob.glob(osp.join(PACKAGE, '**', '*.py'), recursive=True)
    modules = {module_name(p): p for p in paths}
    graph = {
        name: imported_modules(path, modules)
        for name, path in modules.items()
    }
    assert graph['emo_mm.models.backbones.base'] >= {
        'emo_mm.models.checkpoint'
    }
    assert find_cycle(graph) is None, ' -> '.join(find_cycle(graph))
    # The checker finds a circle where there is one.
    graph['emo_mm.models.checkpoint'].add('emo_mm.models.backbones.base')
    assert find_cycle(graph) is not None


def test_tools_are_short_scripts_of_the_library():
    tools = glob.glob(
        osp.join(REPO_ROOT, 'tools', '**', '*.py'), recursive=True)
    names = {osp.splitext(osp.basename(p))[0] for p in tools}
    assert len(tools) >= 10
    for path in tools:
        source = open(path).read()
        assert source.count('\n') <= 200, path
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported = [node.module or '']
            else:
                continue
            # No tool imports another tool.
            assert not names & {m.split('.')[0]
                                for m in imported}, (path, imported)


def test_no_module_search_path_edits():
    files = [
        p for folder in ('emo_mm', 'tools', 'tests') for p in glob.glob(
            osp.join(REPO_ROOT, folder, '**', '*.py'), recursive=True)
    ]
    assert len(files) > 30
    edit = '.'.join(('sys', 'path'))  # not written out: this file is searched
    offenders = [p for p in files if edit in open(p).read()]
    assert not offenders
