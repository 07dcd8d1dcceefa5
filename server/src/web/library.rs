//! The scene library: every scene animated in its site's layout, and each file of the show
//! library in an editor that checks the change with the core before it is saved and puts
//! each problem beside the line it is about, in the user's language.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{PageLang, code, esc, local_time, name_in, page, t};
use crate::AppState;
use crate::api::ApiError;
use crate::auth::Principal;

pub async fn library(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    lang: PageLang,
) -> Result<Response, ApiError> {
    let l = lang.lang;
    let lib = state.store.checked_library().await?;
    let library = &lib.checked.library;
    let index = state.store.library_index().await?;
    let path_of = |scene: &str| {
        index
            .iter()
            .find(|(p, ..)| p.ends_with(&format!("/scenes/{scene}.toml")))
            .map(|(p, ..)| p.clone())
    };
    let mut main = format!(
        "<h1>{}</h1><p>{}</p>",
        esc(t(l, "library-title")),
        esc(t(l, "library-intro"))
    );
    for (n, (id, site)) in library.sites.iter().enumerate() {
        let _ = write!(
            main,
            "<section aria-labelledby=\"lib-{n}\"><h2 id=\"lib-{n}\">{}</h2><ul class=\"scenes\">",
            esc(name_in(l, &site.name))
        );
        for scene in library.scenes_of(id) {
            let name = name_in(l, &scene.name);
            let edit = path_of(scene.id.as_str()).map_or(String::new(), |p| {
                format!(
                    "<a href=\"/library/{}\">{}</a>",
                    esc(&p),
                    esc(t(l, "library-open"))
                )
            });
            let _ = write!(
                main,
                "<li class=\"scene\" data-scene=\"{id}\"><img src=\"/api/scenes/{id}/animation.gif?width=320&amp;v={v:x}\" width=\"320\" alt=\"{alt}\" loading=\"lazy\"><p><strong>{name}</strong> <code>{id}</code></p><p>{layers} {nl} · {fade} {fs:.1} s · {edit}</p></li>",
                id = esc(scene.id.as_str()),
                v = crate::preview::scene_version(library, &scene.id).unwrap_or(0),
                alt = esc(&format!("{name}: {}", t(l, "library-animation-alt"))),
                name = esc(name),
                layers = esc(t(l, "library-layers")),
                nl = scene.layers.len(),
                fade = esc(t(l, "library-fade")),
                fs = scene.fade.as_secs_f64(),
            );
        }
        main.push_str("</ul></section>");
    }
    let _ = write!(
        main,
        "<section aria-labelledby=\"files-h\"><h2 id=\"files-h\">{}</h2><table><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        esc(t(l, "library-files")),
        esc(t(l, "col-file")),
        esc(t(l, "col-changed")),
        esc(t(l, "col-by"))
    );
    let tz = super::city_zone(library);
    for (path, at, by, _) in &index {
        let _ = write!(
            main,
            "<tr><td><a href=\"/library/{p}\">{p}</a></td><td>{}</td><td>{}</td></tr>",
            esc(&local_time(&tz, *at)),
            esc(by),
            p = esc(path)
        );
    }
    main.push_str("</tbody></table></section>");
    let title = t(l, "library-title");
    Ok(page(lang, Some(&who), title, "/library", &main))
}

pub async fn library_file(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(path): Path<String>,
    lang: PageLang,
) -> Result<Response, ApiError> {
    let l = lang.lang;
    let files = state.store.library().await?;
    let file = files.iter().find(|f| f.path == path).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no file `{path}` in the library"),
        )
    })?;
    let lib = state.store.checked_library().await?;
    let editable = crate::api::may_edit(&who, &path);
    let mut main = format!(
        "<p><a href=\"/library\">← {}</a></p><h1><code>{}</code></h1>",
        esc(t(l, "nav-library")),
        esc(&path)
    );
    let scene = path
        .rsplit_once("/scenes/")
        .and_then(|(_, f)| f.strip_suffix(".toml"))
        .and_then(|id| id.parse::<nightscape_core::SceneId>().ok())
        .filter(|id| lib.checked.library.scenes.contains_key(id));
    if let Some(id) = &scene {
        let _ = write!(
            main,
            "<img class=\"animation\" id=\"animation\" src=\"/api/scenes/{id}/animation.gif?width=640&amp;v={v:x}\" width=\"640\" alt=\"{}\">",
            esc(&format!("{id}: {}", t(l, "library-animation-alt"))),
            v = crate::preview::scene_version(&lib.checked.library, id).unwrap_or(0)
        );
    }
    // The saved file's own problems (warnings; a file with errors is never saved).
    let known: Vec<crate::api::DiagnosticView> = crate::api::diagnostics(&lib.checked, l)
        .diagnostics
        .into_iter()
        .filter(|d| d.file == path)
        .collect();
    let _ = write!(
        main,
        "<form id=\"editor\" data-path=\"{p}\" data-lang=\"{lc}\" data-line=\"{line}\" data-ok=\"{ok}\" data-saved=\"{saved}\" data-not-saved=\"{not_saved}\" data-failed=\"{failed}\" data-others=\"{others}\"><label for=\"text\">{label}</label><div class=\"editor\"><pre class=\"gutter\" aria-hidden=\"true\"></pre><textarea id=\"text\" name=\"text\" spellcheck=\"false\" autocomplete=\"off\" rows=\"28\" aria-describedby=\"diagnostics-h\"{ro}>{text}</textarea><section class=\"diagnostics\" aria-labelledby=\"diagnostics-h\"><h2 id=\"diagnostics-h\">{dh}</h2><p id=\"check-result\" role=\"status\"></p><ul id=\"diagnostics\">",
        p = esc(&path),
        lc = code(l),
        line = esc(t(l, "editor-line")),
        ok = esc(t(l, "editor-ok")),
        saved = esc(t(l, "editor-saved")),
        not_saved = esc(t(l, "editor-not-saved")),
        failed = esc(t(l, "action-failed")),
        others = esc(t(l, "editor-others")),
        label = esc(t(l, "editor-text")),
        ro = if editable { "" } else { " readonly" },
        text = esc(&file.text),
        dh = esc(t(l, "editor-problems")),
    );
    for d in &known {
        let _ = write!(
            main,
            "<li class=\"{sev}\" data-line=\"{line}\"><button type=\"button\" class=\"goto\" data-line=\"{line}\" data-column=\"{col}\">{lt} {line}</button> <strong>{title}</strong> <code>{field}</code> {msg}</li>",
            sev = esc(&d.severity),
            line = d.line.unwrap_or(1),
            col = d.column.unwrap_or(1),
            lt = esc(t(l, "editor-line")),
            title = esc(&d.title),
            field = esc(&d.path),
            msg = esc(&d.message),
        );
    }
    main.push_str("</ul></section></div>");
    let _ = write!(
        main,
        "<p class=\"buttons\"><button type=\"button\" id=\"check\">{}</button>",
        esc(t(l, "editor-check"))
    );
    if editable {
        let _ = write!(
            main,
            " <button type=\"submit\" id=\"save\">{}</button>",
            esc(t(l, "editor-save"))
        );
    } else {
        let _ = write!(
            main,
            " <span class=\"muted\">{}</span>",
            esc(t(l, "editor-read-only"))
        );
    }
    main.push_str("</p></form>");
    let title = path.rsplit('/').next().unwrap_or(&path).to_owned();
    let page_path = format!("/library/{path}");
    Ok(page(lang, Some(&who), &title, &page_path, &main))
}
